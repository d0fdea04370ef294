from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.models_registry.models import ModelKind, ModelOrigin
from app.models_registry.quality import chance_verdict, held_out


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: ModelKind
    name: str | None
    origin: ModelOrigin = Field(description="trained by a job of this server, or imported from a directory")
    artifact: str = Field(
        description="Trained: its path under the artifact store; imported: the directory it came from"
    )
    reward_label: int | None = Field(
        description="Imported classifiers with several outputs: the index of the label that is the reward"
    )
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
        if self.kind != ModelKind.reward or self.origin == ModelOrigin.imported:
            return None  # not measured here (chance_verdict)
        return chance_verdict(self.kind.value, self.metrics) is None

    @computed_field(
        description="Reward models, and DPO policies (preference accuracy): 'accuracy [low, high] on N "
        "pairs of M held-out prompts'"
    )
    @property
    def held_out(self) -> str | None:
        figures = held_out(self.metrics)
        return figures.describe() if figures else None


class ModelImport(BaseModel):
    """`POST /models/import`: register a Hugging Face model directory as a version."""

    model_config = ConfigDict(extra="forbid")

    kind: ModelKind = Field(description="policy: a causal LM; reward: a sequence classifier")
    path: str = Field(min_length=1, max_length=1000, description="A directory inside PREFLAB_MODEL_DIRS")
    name: str | None = Field(None, min_length=1, max_length=200, description="Default: the directory's name")
    reward_label: int | str | None = Field(
        None,
        description="A classifier with several outputs: the label (index or name) whose logit, less the "
        "log-sum-exp of the others, is the reward; one output: leave it null (the logit is the reward)",
    )
