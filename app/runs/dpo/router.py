"""JSON API: start a DPO run (admin)."""

from fastapi import APIRouter, status

from app.dependencies import AdminUser, SessionDep
from app.jobs.schemas import JobCreated
from app.projects.dependencies import ProjectDep
from app.runs.dpo import service
from app.runs.dpo.schemas import DPOTrainRequest

router = APIRouter(tags=["models"])


@router.post(
    "/projects/{project_id}/train/dpo", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_dpo(admin: AdminUser, project: ProjectDep, body: DPOTrainRequest, session: SessionDep):
    job = service.queue_dpo_training(session, project=project, request=body, created_by_id=admin.id)
    return JobCreated(job_id=job.id)
