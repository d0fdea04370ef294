"""What the cards of the kinds that train a policy (SFT, DPO) offer as the starting policy."""

from typing import Any

from sqlalchemy.orm import Session

from app.models_registry import service as registry
from app.models_registry.models import ModelKind
from app.projects.models import Project


def policy_choices(session: Session, project: Project) -> dict[str, Any]:
    return {"policy_models": registry.list_models(session, kind=ModelKind.policy)}
