"""The DPO run's request: the one source of its defaults and limits (form, API and worker)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.exports.schemas import TrainingFilters
from app.ids import Id


class DPOTrainRequest(BaseModel):
    """`POST /projects/{id}/train/dpo`. beta and the loss are TRL's `DPOConfig` defaults; the learning rate
    is ten times TRL's 1e-6, which moved the bundled 135M policy not at all in a CPU-sized run (KL 0.00
    after 60 steps; docs/benchmarks.md, "DPO at higher learning rates")."""

    model_config = ConfigDict(extra="forbid")

    policy: str | Id = Field(
        "default",
        description='"default" (the bundled policy) or the id of a registered policy version; it is also the '
        "frozen reference",
    )
    beta: float = Field(0.1, gt=0, le=10, description="Strength of the pull towards the reference")
    loss_type: Literal["sigmoid", "ipo"] = Field("sigmoid", description="sigmoid: DPO's loss; ipo: IPO's")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed share of flipped labels (robust DPO; sigmoid loss only)"
    )
    max_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Stop after this many optimizer steps; null: run every epoch"
    )
    epochs: int = Field(1, ge=1, le=50)
    learning_rate: float = Field(
        1e-5, gt=0, le=1e-2, description="TRL's default is 1e-6; see docs/benchmarks.md for why not here"
    )
    max_length: int = Field(512, ge=16, le=32_768, description="Tokens of prompt + answer")
    batch_size: int = Field(8, ge=1, le=1024, description="Pairs per optimizer step")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256)
    lora_r: int = Field(
        0, ge=0, le=1024, description="LoRA rank (0: train every weight); the reference is then adapters-off"
    )
    eval_fraction: float = Field(
        0.1, ge=0, le=0.5, description="Share of prompts whose pairs are held out for preference accuracy"
    )
    kl_samples: int = Field(
        16, ge=0, le=1024, description="Completions sampled for held-out prompts to measure the KL (0: none)"
    )
    max_new_tokens: int | None = Field(
        None, ge=1, le=4096, description="Length of those completions; null: the project's"
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, one more forward per step",
    )
    seed: int = Field(0, ge=0)
    filters: TrainingFilters = Field(default_factory=TrainingFilters)
    force: bool = Field(
        False,
        description="Start even though the held-out split would be too small to measure the run "
        "(otherwise 409 too_little_data: fewer than 20 held-out pairs or 5 held-out prompts)",
    )
