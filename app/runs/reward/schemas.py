"""The reward-model run's request: the one source of its defaults and limits (form, API and worker)."""

from pydantic import BaseModel, ConfigDict, Field

from app.exports.schemas import TrainingFilters


class RewardTrainRequest(BaseModel):
    """`POST /projects/{id}/train/reward`. Defaults suit the bundled MiniLM backbone on a CPU."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = Field(
        "default", description='"default" (all-MiniLM-L6-v2) or a local HF model directory'
    )
    # 3 epochs at 1e-4: at one epoch of 2e-5 the MiniLM reward model stayed at chance on HH-RLHF (4,191
    # pairs) and on the loop's synthetic preferences (200 prompts); see docs/benchmarks.md, issues 5, 12.
    epochs: int = Field(3, ge=1, le=50)
    learning_rate: float = Field(1e-4, gt=0, le=1e-2)
    max_length: int = Field(256, ge=16, le=8192)
    batch_rankings: int = Field(8, ge=1, le=512, description="Rankings per batch (each is K completions)")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256)
    eval_fraction: float = Field(0.1, ge=0, le=0.5, description="Share of prompts held out for evaluation")
    margin_scale: float = Field(0.0, ge=0, le=10, description="Margin per tier of difference (0: off)")
    center_coef: float = Field(0.0, ge=0, le=1, description="Reward-centering penalty (0: off)")
    gradient_checkpointing: bool = False
    seed: int = Field(0, ge=0)
    filters: TrainingFilters = Field(default_factory=TrainingFilters)
    force: bool = Field(
        False,
        description="Start even though the held-out split would be too small to measure the run "
        "(otherwise 409 too_little_data: fewer than 20 held-out pairs or 5 held-out prompts)",
    )
