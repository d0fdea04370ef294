"""Queueing a DPO run on a project's comparisons, and registering the policy it produced. No HTTP types
here."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.exports.schemas import ExportFilters
from app.exports.service import plan_export
from app.jobs import service as jobs
from app.jobs.models import Job
from app.labeling.models import Comparison, Ranking
from app.models_registry import service as registry
from app.models_registry.models import ModelKind
from app.projects.models import Project
from app.projects.schemas import GenerationSettings
from app.runs.dpo.schemas import DPOTrainRequest
from app.runs.held_out import held_out_prompt_ids, project_sampling, require_enough_held_out, starting_policy

KIND = "dpo"


def queue_dpo_training(
    session: Session, *, project: Project, request: DPOTrainRequest, created_by_id: int | None
) -> Job:
    """Check the filters (the reward model's), the starting policy and that the project has comparisons
    (422), then queue the job: the request, where the policy lives, the held-out prompts (seeded; their
    pairs measure preference accuracy, and an evaluation round of the new policy defaults to them)."""
    filters = ExportFilters(kind="pairs", format="jsonl", **request.filters.model_dump())
    plan = plan_export(session, project=project, filters=filters)
    prompt_ids = list(
        session.scalars(
            select(Comparison.prompt_id)
            .join(Ranking, Ranking.id == Comparison.ranking_id)
            .where(Comparison.project_id == project.id, Ranking.gold.is_(False))  # gold is never trained on
            .distinct()
        )
    )
    if not prompt_ids:
        raise InvalidInput(
            f"Project '{project.name}' has no comparisons yet: rank some completions (or import preference "
            "data) first.",
            code="no_comparisons",
            details={"field": "project_id"},
        )
    config = request.model_dump(mode="json") | starting_policy(session, request.policy, field="policy")
    require_enough_held_out(session, plan=plan, eval_fraction=request.eval_fraction, force=request.force)
    config["max_new_tokens"] = (
        request.max_new_tokens or GenerationSettings.model_validate(project.generation).max_new_tokens
    )
    config["eval_prompt_ids"] = held_out_prompt_ids(prompt_ids, request.eval_fraction, request.seed)
    config |= project_sampling(project)
    return jobs.enqueue(session, kind=KIND, project_id=project.id, config=config, created_by_id=created_by_id)


def register_policy(session: Session, job: Job, artifact: str | None) -> None:
    registry.register_from_job(session, job=job, artifact=artifact, kind=ModelKind.policy)
