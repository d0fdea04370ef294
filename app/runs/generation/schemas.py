"""A generate job's reports: the worker's completions for some of its prompts."""

from pydantic import Field

from app.jobs.schemas import WorkerReport
from app.prompts.schemas import GeneratedForPrompt


class GeneratedBatch(WorkerReport):
    """`POST /jobs/{id}/completions`: a generate job's results for some of its prompts."""

    items: list[GeneratedForPrompt] = Field(max_length=1000)
