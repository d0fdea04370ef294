from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.ids import Id
from app.prompts.schemas import ChatMessage


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


class RankingCreated(BaseModel):
    ranking_id: int
    comparisons: int


class LabelerProgress(BaseModel):
    ranked_today: int
    ranked_total: int
    left_in_project: int
