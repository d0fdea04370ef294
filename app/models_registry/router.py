"""JSON API: training runs and model versions."""

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.auth.models import Role, User
from app.dependencies import AdminUser, SessionDep, require_roles
from app.ids import Id
from app.jobs.schemas import JobCreated
from app.models_registry import service
from app.models_registry.models import ModelKind
from app.models_registry.schemas import ModelOut, PPOTrainRequest, RewardTrainRequest
from app.pagination import Page
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["models"])
# Workers read model versions too: a PPO job starts from a reward model and a policy version.
ModelReader = Annotated[User, Depends(require_roles(Role.admin, Role.researcher, Role.worker))]


@router.post(
    "/projects/{project_id}/train/reward", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_reward(admin: AdminUser, project: ProjectDep, body: RewardTrainRequest, session: SessionDep):
    job = service.queue_reward_training(session, project=project, request=body, created_by_id=admin.id)
    return JobCreated(job_id=job.id)


@router.post(
    "/projects/{project_id}/train/ppo", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def train_ppo(admin: AdminUser, project: ProjectDep, body: PPOTrainRequest, session: SessionDep):
    job = service.queue_ppo_training(session, project=project, request=body, created_by_id=admin.id)
    return JobCreated(job_id=job.id)


@router.get("/models", response_model=Page[ModelOut])
def list_models(
    _reader: ModelReader, session: SessionDep, project_id: Id | None = None, kind: ModelKind | None = None
):
    return Page(items=service.list_models(session, project_id=project_id, kind=kind), next_cursor=None)


@router.get("/models/{model_id}", response_model=ModelOut)
def get_model(_reader: ModelReader, model_id: Id, session: SessionDep):
    return service.get_model(session, model_id)
