from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.ids import Id

# generating: the two-model generation job is queued or running; generation_failed: it failed or was
# cancelled (retry it, or POST /evaluations/{id}/generate); labeling: completions are in, rankings are
# still due; complete: every prompt has both completions and its rankings_per_prompt rankings.
RoundStatus = Literal["generating", "generation_failed", "labeling", "complete"]


class EvaluationCreate(BaseModel):
    """`POST /projects/{id}/evaluations`."""

    model_config = ConfigDict(extra="forbid")

    candidate: Id = Field(description="The policy version under test (GET /models?kind=policy)")
    baseline: Id | str | None = Field(
        None,
        description='"default", a local model directory or a policy version id; '
        "default: the policy the candidate's PPO run started from",
    )
    prompts: int = Field(50, ge=1, le=2000, description="How many prompts to evaluate on (at most)")
    rankings_per_prompt: int | None = Field(
        None, ge=1, le=50, description="Labelers per prompt; default: the project's"
    )
    seed: int = Field(0, ge=0, description="Seeds the prompt sample when the candidate has no held-out set")


class SideFlags(BaseModel):
    candidate: dict[str, int]
    baseline: dict[str, int]


class EvaluationOut(BaseModel):
    id: int
    project_id: int
    number: int
    round_project_id: int
    round_project_name: str
    candidate: str = Field(description='The candidate model as completions record it, "model:<id>"')
    candidate_model_id: int | None
    baseline: str = Field(description='"default", a path or "model:<id>"')
    prompts: int = Field(description="Prompts copied into the round")
    prompt_source: Literal["held_out", "sample"]
    rankings_per_prompt: int
    job_id: int | None = Field(description="The latest generation job of the round")
    status: RoundStatus
    prompts_ready: int = Field(description="Prompts with both completions, ready to rank")
    rankings: int = Field(description="Rankings so far")
    rankings_target: int = Field(description="prompts x rankings_per_prompt")
    wins: int = Field(description="Rankings that put the candidate above the baseline")
    ties: int
    losses: int
    none_acceptable: int = Field(description="Rankings marked 'none acceptable' (still counted by order)")
    flags: SideFlags = Field(description="How often each flag was put on each side's completions")
    prompts_scored: int = Field(description="Prompts with at least one ranking: the interval's n")
    win_rate: float | None = Field(description="Candidate score: win 1, tie 0.5, loss 0; mean over prompts")
    ci_low: float | None = Field(description="95% Wilson score interval over prompts")
    ci_high: float | None
    created_by: str | None
    created_at: datetime
