from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.ids import Id
from app.projects.schemas import ProjectTask
from app.prompts.schemas import ChatMessage

MAX_DEMONSTRATION_CHARS = 32_000


class RewriteIn(BaseModel):
    """A labeler's improved version of the best completion, sent with the ranking."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_DEMONSTRATION_CHARS, description="The improved answer")
    edited_from: Id = Field(description="The completion it improves: one of the ranking's best tier")


class DemonstrationIn(BaseModel):
    """`POST /assignments/{id}/demonstration`: the answer a labeler wrote for a `demonstrate` task."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_DEMONSTRATION_CHARS, description="The answer")
    edited_from: Id | None = Field(
        None, description="The task's completion the answer started from; null: written from scratch"
    )
    seconds_spent: float | None = Field(None, ge=0, le=86_400)


class DemonstrationCreated(BaseModel):
    demonstration_id: int


class TaskCompletion(BaseModel):
    id: int
    text: str


class TaskPrompt(BaseModel):
    id: int
    messages: list[ChatMessage]


class Task(BaseModel):
    """What a labeler sees: never which model wrote a completion, always in this assignment's order."""

    assignment_id: int
    project_id: int
    task: ProjectTask = Field(
        description='"rank": answer with POST /assignments/{id}/ranking; "demonstrate": write the answer '
        "(completions, if any, are a start) and POST /assignments/{id}/demonstration"
    )
    instructions_md: str
    instructions_version: int
    prompt: TaskPrompt
    completions: list[TaskCompletion]
    expires_at: datetime


class RankingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ranking: list[list[Id]] = Field(min_length=1, description="Tiers of completion ids, best first")
    flags: dict[str, list[str]] = Field(
        default_factory=dict, description='{"<completion id>": ["flag", ...]}'
    )
    none_acceptable: bool = False
    seconds_spent: float | None = Field(None, ge=0, le=86_400)
    rewrite: RewriteIn | None = Field(
        None, description="The labeler's improvement of the best completion, stored as a demonstration"
    )


class RankingCreated(BaseModel):
    ranking_id: int
    comparisons: int
    demonstration_id: int | None = Field(None, description="The rewrite's demonstration, when one was sent")


class LabelerProgress(BaseModel):
    ranked_today: int
    ranked_total: int
    left_in_project: int
