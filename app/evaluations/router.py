"""JSON API: evaluation rounds (start one, read their win rates)."""

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.dependencies import AdminUser, ProjectReader, SessionDep, SettingsDep
from app.evaluations import service
from app.evaluations.models import EvaluationRound
from app.evaluations.schemas import EvaluationCreate, EvaluationOut
from app.ids import Id
from app.jobs.schemas import JobCreated
from app.pagination import Page
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["evaluations"])


def valid_round_id(evaluation_id: Id, session: SessionDep) -> EvaluationRound:
    """Load the round named in the path, or answer 404."""
    return service.get_round(session, evaluation_id)


RoundDep = Annotated[EvaluationRound, Depends(valid_round_id)]


@router.post(
    "/projects/{project_id}/evaluations", status_code=status.HTTP_202_ACCEPTED, response_model=EvaluationOut
)
def create_evaluation(
    admin: AdminUser, project: ProjectDep, body: EvaluationCreate, session: SessionDep, settings: SettingsDep
):
    """Copy prompts into a new round and queue one completion per prompt from each model."""
    round_ = service.create_round(
        session, project=project, request=body, author=admin, model_dirs=settings.allowed_model_dirs
    )
    return service.round_out(session, round_)


@router.get("/projects/{project_id}/evaluations", response_model=Page[EvaluationOut])
def list_evaluations(_reader: ProjectReader, project: ProjectDep, session: SessionDep):
    rounds = service.list_rounds(session, project=project)
    return Page(items=[service.round_out(session, r) for r in rounds], next_cursor=None)


@router.get("/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(_reader: ProjectReader, round_: RoundDep, session: SessionDep):
    return service.round_out(session, round_)


@router.post(
    "/evaluations/{evaluation_id}/generate", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def generate_evaluation(admin: AdminUser, round_: RoundDep, session: SessionDep, settings: SettingsDep):
    """Queue the round's generation again (fills what is missing), or return the job already active."""
    job, _ = service.queue_round_generation(
        session, round_=round_, created_by_id=admin.id, model_dirs=settings.allowed_model_dirs
    )
    return JobCreated(job_id=job.id)
