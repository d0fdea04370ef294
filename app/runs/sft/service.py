"""Queueing an SFT run on a project's demonstrations, and registering the policy it produced. No HTTP
types here."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.exports.schemas import ExportFilters
from app.exports.service import plan_export
from app.jobs import service as jobs
from app.jobs.models import Job
from app.labeling.models import Demonstration
from app.models_registry import service as registry
from app.models_registry.models import ModelKind
from app.projects.models import Project
from app.runs.held_out import held_out_prompt_ids, project_sampling, starting_policy
from app.runs.sft.schemas import SFTTrainRequest

KIND = "sft"


def queue_sft_training(
    session: Session, *, project: Project, request: SFTTrainRequest, created_by_id: int | None
) -> Job:
    """Check the filters, the starting policy and that there is something to learn from (422), then
    queue the job. The config is the request plus where the starting policy lives and the held-out
    prompts (seeded; an evaluation round of the new policy defaults to them)."""
    filters = ExportFilters(kind="demonstrations", format="jsonl", **request.filters.model_dump())
    plan_export(session, project=project, filters=filters)
    prompt_ids = list(
        session.scalars(
            select(Demonstration.prompt_id).where(Demonstration.project_id == project.id).distinct()
        )
    )
    if not prompt_ids:
        raise InvalidInput(
            f"Project '{project.name}' has no demonstrations yet: labelers write them in a project whose "
            "task is 'demonstrate', or rewrite the best completion while ranking.",
            code="no_demonstrations",
            details={"field": "project_id"},
        )
    config = request.model_dump(mode="json") | starting_policy(
        session, request.base_model, field="base_model"
    )
    config["eval_prompt_ids"] = held_out_prompt_ids(prompt_ids, request.eval_fraction, request.seed)
    config |= project_sampling(project)
    return jobs.enqueue(session, kind=KIND, project_id=project.id, config=config, created_by_id=created_by_id)


def register_policy(session: Session, job: Job, artifact: str | None) -> None:
    registry.register_from_job(session, job=job, artifact=artifact, kind=ModelKind.policy)
