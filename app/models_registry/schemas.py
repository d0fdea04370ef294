from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models_registry.models import ModelKind


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


class TrainingFilters(BaseModel):
    """Which comparisons to train on: the export's filters (see docs/exports.md)."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    min_agreement: float | None = Field(None, ge=-1, le=1)
    exclude_flags: list[str] = Field(default_factory=list)
    labelers: list[str] = Field(default_factory=list)


class RewardTrainRequest(BaseModel):
    """`POST /projects/{id}/train/reward`. Defaults suit the bundled MiniLM backbone on a CPU."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(
        "default", description='"default" (all-MiniLM-L6-v2) or a local HF model directory'
    )
    epochs: int = Field(1, ge=1, le=50)
    learning_rate: float = Field(2e-5, gt=0, le=1e-2)
    max_length: int = Field(256, ge=16, le=8192)
    batch_rankings: int = Field(8, ge=1, le=512, description="Rankings per batch (each is K completions)")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256)
    eval_fraction: float = Field(0.1, ge=0, le=0.5, description="Share of prompts held out for evaluation")
    margin_scale: float = Field(0.0, ge=0, le=10, description="Margin per tier of difference (0: off)")
    center_coef: float = Field(0.0, ge=0, le=1, description="Reward-centering penalty (0: off)")
    gradient_checkpointing: bool = False
    seed: int = Field(0, ge=0)
    filters: TrainingFilters = Field(default_factory=TrainingFilters)
