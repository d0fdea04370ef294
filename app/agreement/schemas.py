"""The agreement report of a project, as the API returns it (and the page shows it)."""

from pydantic import BaseModel, Field


class HistogramBin(BaseModel):
    lower: float = Field(description="Lower edge of the bin (included)")
    upper: float = Field(description="Upper edge (excluded, but the last bin includes 1)")
    count: int


class AgreementProgress(BaseModel):
    prompts: int = Field(description="Prompts in the project")
    ranked: int = Field(description="Prompts with at least one ranking")
    complete: int = Field(description="Prompts with rankings_per_prompt rankings or more")
    ranked_twice: int = Field(description="Prompts with at least two rankings: agreement needs two")
    with_agreement: int = Field(description="Prompts whose agreement is defined")


class PromptAgreement(BaseModel):
    prompt_id: int
    rankings: int = Field(description="Rankings of this prompt (labelers' and imported)")
    agreement: float | None = Field(
        description="Mean Kendall tau-b over every pair of its rankings, -1..1; null with fewer than two"
    )
    consensus: list[list[int]] = Field(
        description="Completion ids by Bradley-Terry score, best first; ids in one tier are tied"
    )
    scores: dict[int, float] = Field(
        description="Bradley-Terry score (log-strength, mean 0) per completion id"
    )


class LabelerAgreement(BaseModel):
    labeler_id: int
    username: str
    rankings: int = Field(description="Rankings this labeler submitted in the project")
    median_seconds: float | None = Field(description="Median seconds per task (null if none was timed)")
    agreement: float | None = Field(
        description="Mean tau-b between this labeler's ranking and the consensus of the other rankings of "
        "the same prompt (leave-one-out), over the shared prompts where it is defined"
    )
    prompts_shared: int = Field(
        description="Prompts this labeler ranked that have at least one other ranking"
    )
    prompts_defined: int = Field(description="Of those, prompts whose leave-one-out tau-b is defined")
    histogram: list[HistogramBin] = Field(description="This labeler's per-prompt leave-one-out tau-b")


class ProjectAgreement(BaseModel):
    project_id: int
    rankings_per_prompt: int
    rankings: int = Field(description="Rankings in the project")
    progress: AgreementProgress
    mean_agreement: float | None = Field(description="Mean of the defined per-prompt agreements")
    histogram: list[HistogramBin] = Field(description="Per-prompt agreement, ten bins over [-1, 1]")
    labelers: list[LabelerAgreement] = Field(
        description="Least agreement first (labelers with none defined last), then by username"
    )
    prompts: list[PromptAgreement] = Field(description="Every ranked prompt, by id")
