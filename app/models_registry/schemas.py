from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, computed_field

from app.models_registry.models import ModelKind
from app.models_registry.quality import chance_verdict, held_out


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: ModelKind
    artifact: str
    job_id: int | None
    project_id: int | None
    base_model: str
    metrics: dict[str, Any]
    created_at: datetime

    @computed_field(
        description="Reward models: whether the 95% interval of the held-out accuracy lies above 0.5 "
        "(false when it reaches 0.5 or was not measured); null for policies"
    )
    @property
    def better_than_chance(self) -> bool | None:
        if self.kind != ModelKind.reward:
            return None
        return chance_verdict(self.kind.value, self.metrics) is None

    @computed_field(description="Reward models: 'accuracy [low, high] on N pairs of M held-out prompts'")
    @property
    def held_out(self) -> str | None:
        figures = held_out(self.kind.value, self.metrics)
        return figures.describe() if figures else None
