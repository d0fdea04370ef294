"""JSON API: start a PPO run (admin)."""

from fastapi import APIRouter, status

from app.dependencies import AdminUser, SessionDep
from app.jobs.schemas import JobCreated
from app.projects.dependencies import ProjectDep
from app.runs.ppo import service
from app.runs.ppo.schemas import PPOTrainRequest

router = APIRouter(tags=["models"])


@router.post(
    "/projects/{project_id}/train/ppo", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_ppo(admin: AdminUser, project: ProjectDep, body: PPOTrainRequest, session: SessionDep):
    job = service.queue_ppo_training(session, project=project, request=body, created_by_id=admin.id)
    return JobCreated(job_id=job.id)
