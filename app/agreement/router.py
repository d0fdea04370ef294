"""JSON API: a project's agreement report (admins and researchers)."""

from fastapi import APIRouter

from app.agreement import service
from app.agreement.schemas import ProjectAgreement
from app.dependencies import ProjectReader, SessionDep
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["agreement"])


@router.get("/projects/{project_id}/agreement", response_model=ProjectAgreement)
def get_agreement(_reader: ProjectReader, project: ProjectDep, session: SessionDep):
    """Agreement between the labelers of each prompt, the consensus ranking, and each labeler's agreement
    with the others. See docs/agreement.md for what each number means."""
    return service.project_agreement(session, project=project)
