"""JSON API: start a reward-model run (admin)."""

from fastapi import APIRouter, status

from app.dependencies import AdminUser, SessionDep, SettingsDep
from app.jobs.schemas import JobCreated
from app.projects.dependencies import ProjectDep
from app.runs.reward import service
from app.runs.reward.schemas import RewardTrainRequest

router = APIRouter(tags=["models"])


@router.post(
    "/projects/{project_id}/train/reward", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_reward(
    admin: AdminUser,
    project: ProjectDep,
    body: RewardTrainRequest,
    session: SessionDep,
    settings: SettingsDep,
):
    job = service.queue_reward_training(
        session,
        project=project,
        request=body,
        created_by_id=admin.id,
        model_dirs=settings.allowed_model_dirs,
    )
    return JobCreated(job_id=job.id)
