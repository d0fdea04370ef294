from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.ids import MAX_ID, Id

MAX_TEXT = 200_000
"""Longest prompt, message or completion, in characters (uploads, imports and worker reports alike)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1, max_length=MAX_TEXT)


class PromptIn(BaseModel):
    """One line of a prompt upload: plain text or a chat, optionally with completions to rank."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=200)
    completions: list[Annotated[str, Field(max_length=MAX_TEXT)]] | None = Field(None, max_length=9)
    metadata: dict[str, Any] | None = None
    gold: list[list[int]] | None = Field(
        None,
        description="A gold task's known answer: tiers of indexes into `completions`, best first "
        "(every index once, at least two tiers)",
    )

    @model_validator(mode="after")
    def _exactly_one_form(self) -> "PromptIn":
        if (self.prompt is None) == (self.messages is None):
            raise ValueError('give exactly one of "prompt" (text) or "messages" (a chat)')
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError('"prompt" is blank')
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError('the last of "messages" must have role "user": it is what the model answers')
        if self.completions is not None:
            if any(not text.strip() for text in self.completions):
                raise ValueError('"completions" contains a blank completion')
            if len(set(self.completions)) != len(self.completions):
                raise ValueError('"completions" contains the same text twice; labelers cannot rank twins')
        if self.gold is not None:
            count = len(self.completions or [])
            indexes = [i for tier in self.gold for i in tier]
            if sorted(indexes) != list(range(count)) or len(self.gold) < 2 or any(not t for t in self.gold):
                raise ValueError(
                    f'"gold" must put each completion index (0 to {count - 1}) in exactly one tier, '
                    "in at least two non-empty tiers"
                )
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


# pending: fewer than K completions; ready: K completions, still needs rankings;
# complete: ranked by `rankings_per_prompt` labelers; imported: came with imported preference data
# (never labeled or generated for).
PromptStatus = Literal["pending", "ready", "complete", "imported"]


class CompletionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    origin: str
    model: str | None
    seed: int | None
    created_at: datetime


class PromptOut(BaseModel):
    id: int
    project_id: int
    messages: list[ChatMessage]
    metadata: dict[str, Any]
    source: str
    status: PromptStatus
    rankings: int
    completions: list[CompletionOut]
    created_at: datetime


class ImportReport(BaseModel):
    imported: int = Field(description="Prompts added")
    completions: int = Field(0, description="Completions brought with them")
    format: Literal["jsonl", "csv"]
    source: str


class GeneratedCompletion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    seed: int | None = Field(
        None, ge=0, le=MAX_ID, description="The completion's sampling seed (an INTEGER column)"
    )
    finished: bool | None = Field(None, description="Whether the model ended the text itself (EOS)")
    model: str | None = Field(
        None, max_length=500, description="Which of a two-model job's `models` wrote it (evaluation rounds)"
    )


class GeneratedForPrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_id: Id
    completions: list[GeneratedCompletion] = Field(max_length=9)


class GeneratedResult(BaseModel):
    added: int = Field(description="Completions stored")
    duplicates: int = Field(description="Dropped: same text as another completion of the prompt")
    surplus: int = Field(description="Dropped: the prompt already had K completions")
    prompts_remaining: int = Field(description="Prompts of the project still short of K completions")
