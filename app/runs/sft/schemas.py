"""The SFT run's request: the one source of its defaults and limits (form, API and worker)."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.ids import Id


class DemonstrationFilters(BaseModel):
    """Which demonstrations to train on: the `kind=demonstrations` export's filters."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = None
    until: datetime | None = None
    labelers: list[str] = Field(default_factory=list, description="Only these pseudonymous labeler ids")


class SFTTrainRequest(BaseModel):
    """`POST /projects/{id}/train/sft`. Defaults suit the bundled 135M policy and a few hundred
    demonstrations on a CPU (minutes)."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | Id = Field(
        "default", description='"default" (the bundled policy) or the id of a registered policy version'
    )
    max_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Stop after this many optimizer steps; null: run every epoch"
    )
    epochs: int = Field(2, ge=1, le=50)
    learning_rate: float = Field(2e-5, gt=0, le=1e-2, description="TRL's SFTTrainer default")
    max_length: int = Field(
        1024, ge=16, le=32_768, description="Tokens of prompt + answer; longer ones lose the prompt's start"
    )
    batch_size: int = Field(8, ge=1, le=1024, description="Demonstrations per optimizer step")
    gradient_accumulation_steps: int = Field(1, ge=1, le=256)
    lora_r: int = Field(0, ge=0, le=1024, description="LoRA rank (0: train every weight)")
    eval_fraction: float = Field(
        0.1, ge=0, le=0.5, description="Share of prompts whose demonstrations are held out for the loss"
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, one more forward per step",
    )
    seed: int = Field(0, ge=0)
    filters: DemonstrationFilters = Field(default_factory=DemonstrationFilters)
