"""JSON API: model versions (admins, researchers and workers read them)."""

from typing import Annotated

from fastapi import APIRouter, Depends, status

from app.auth.models import Role, User
from app.dependencies import AdminUser, SessionDep, SettingsDep, require_roles
from app.ids import Id
from app.models_registry import service
from app.models_registry.importing import import_model
from app.models_registry.models import ModelKind
from app.models_registry.schemas import ModelImport, ModelOut
from app.pagination import Page

router = APIRouter(tags=["models"])
# Workers read model versions too: a PPO job starts from a reward model and a policy version.
ModelReader = Annotated[User, Depends(require_roles(Role.admin, Role.researcher, Role.worker))]


@router.get("/models", response_model=Page[ModelOut])
def list_models(
    _reader: ModelReader, session: SessionDep, project_id: Id | None = None, kind: ModelKind | None = None
):
    return Page(items=service.list_models(session, project_id=project_id, kind=kind), next_cursor=None)


@router.get("/models/{model_id}", response_model=ModelOut)
def get_model(_reader: ModelReader, model_id: Id, session: SessionDep):
    return service.get_model(session, model_id)


@router.post("/models/import", status_code=status.HTTP_201_CREATED, response_model=ModelOut)
def import_a_model(_admin: AdminUser, body: ModelImport, session: SessionDep, settings: SettingsDep):
    """Register a Hugging Face model directory inside PREFLAB_MODEL_DIRS as a policy or reward version."""
    return import_model(session, request=body, model_dirs=settings.allowed_model_dirs)
