from datetime import datetime
from typing import Annotated, Literal

from pydantic import AliasPath, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.ids import Id

FlagName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{0,39}$")]
DEFAULT_FLAGS = ["unsafe", "factually_wrong", "nonsense", "off_topic"]
ProjectTask = Literal["rank", "demonstrate"]
TASK_DESCRIPTION = (
    '"rank": labelers rank the K completions; "demonstrate": they write the answer (starting from the '
    "prompt's completions, if it has any), the data SFT trains on"
)


def _require_unique(flags: list[str] | None) -> list[str] | None:
    if flags is not None and len(set(flags)) != len(flags):
        raise ValueError("flags must not repeat")
    return flags


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | Id = Field("default", description='"default", a local Hugging Face directory, or a model id')
    temperature: float = Field(
        0.8, gt=0, le=2.0, description="Must be above 0: K greedy samples would be twins"
    )
    top_p: float = Field(0.95, gt=0, le=1.0)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    retry_temperature: float | None = Field(
        None,
        gt=0,
        le=2.0,
        description="Temperature of the passes that re-draw prompts still short of K distinct completions "
        "(a near-deterministic model repeats itself); null: the same temperature",
    )


class ProjectFields(BaseModel):
    """The settings an admin chooses; shared by create (all required but name) and the API output."""

    model_config = ConfigDict(extra="forbid")

    instructions_md: str = Field("", max_length=100_000)
    task: ProjectTask = Field("rank", description=TASK_DESCRIPTION)
    completions_per_prompt: int = Field(4, ge=2, le=9, description="K, the completions ranked together")
    rankings_per_prompt: int = Field(1, ge=1, le=50, description="How many different labelers rank a prompt")
    flags: list[FlagName] = Field(default_factory=lambda: list(DEFAULT_FLAGS), max_length=20)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    # labeler quality (docs/quality.md)
    gold_rate: float = Field(0.0, ge=0, le=0.5, description="Share of tasks that are gold tasks (when any)")
    min_seconds: float = Field(3.0, ge=0, le=3600, description="A ranking faster than this is too fast")
    max_fast_share: float = Field(
        0.3, ge=0, le=1, description="Flag a labeler with more than this share of too-fast rankings"
    )
    gold_min_agreement: float = Field(
        0.3, ge=-1, le=1, description="Flag a labeler whose mean gold agreement (tau-b) is below this"
    )
    gold_min_tasks: int = Field(3, ge=1, le=1000, description="Gold rankings before the gold rule applies")

    _flags_unique = field_validator("flags")(_require_unique)


class ProjectCreate(ProjectFields):
    name: str = Field(min_length=1, max_length=100)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError("name must not be blank")
        return name.strip()


class ProjectUpdate(BaseModel):
    """PATCH body: every field optional; `generation` is merged into the current settings."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    instructions_md: str | None = Field(None, max_length=100_000)
    task: ProjectTask | None = Field(None, description="Only while nobody has been handed a task")
    completions_per_prompt: int | None = Field(None, ge=2, le=9)
    rankings_per_prompt: int | None = Field(None, ge=1, le=50)
    flags: list[FlagName] | None = Field(None, max_length=20)
    generation: dict | None = None
    gold_rate: float | None = Field(None, ge=0, le=0.5)
    min_seconds: float | None = Field(None, ge=0, le=3600)
    max_fast_share: float | None = Field(None, ge=0, le=1)
    gold_min_agreement: float | None = Field(None, ge=-1, le=1)
    gold_min_tasks: int | None = Field(None, ge=1, le=1000)

    _flags_unique = field_validator("flags")(_require_unique)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str | None) -> str | None:
        if name is not None and not name.strip():
            raise ValueError("name must not be blank")
        return name.strip() if name is not None else None


class ProjectCounts(BaseModel):
    prompts: int
    completions: int
    prompts_ready: int  # prompts with all K completions, ready to rank


class ProjectOut(ProjectFields):
    id: int
    name: str
    instructions_version: int
    counts: ProjectCounts
    progress: float = Field(description="Share of prompts that have all K completions (0..1)")
    created_at: datetime


class InstructionVersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    body_md: str
    created_at: datetime
    author: str | None = Field(None, validation_alias=AliasPath("author", "username"))


QUALITY_FIELDS = ("gold_rate", "min_seconds", "max_fast_share", "gold_min_agreement", "gold_min_tasks")
