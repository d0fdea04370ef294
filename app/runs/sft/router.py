"""JSON API: start an SFT run (admin)."""

from fastapi import APIRouter, status

from app.dependencies import AdminUser, SessionDep
from app.jobs.schemas import JobCreated
from app.projects.dependencies import ProjectDep
from app.runs.sft import service
from app.runs.sft.schemas import SFTTrainRequest

router = APIRouter(tags=["models"])


@router.post(
    "/projects/{project_id}/train/sft", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_sft(admin: AdminUser, project: ProjectDep, body: SFTTrainRequest, session: SessionDep):
    job = service.queue_sft_training(session, project=project, request=body, created_by_id=admin.id)
    return JobCreated(job_id=job.id)
