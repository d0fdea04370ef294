"""Queueing a reward-model run, and registering the model it produced. No HTTP types here."""

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from app.exports.schemas import ExportFilters
from app.exports.service import plan_export
from app.jobs import service as jobs
from app.jobs.models import Job
from app.models_registry import service as registry
from app.models_registry.models import ModelKind
from app.projects.models import Project
from app.runs.held_out import require_enough_held_out
from app.runs.reward.schemas import RewardTrainRequest

KIND = "reward"


def queue_reward_training(
    session: Session,
    *,
    project: Project,
    request: RewardTrainRequest,
    created_by_id: int | None,
    model_dirs: Sequence[Path] = (),
) -> Job:
    """Check the data filters against the project now (422), then queue the job with the request as
    its config (the worker reads it back strictly as a `RewardTrainRequest`)."""
    filters = ExportFilters(kind="pairs", format="jsonl", **request.filters.model_dump())
    plan = plan_export(session, project=project, filters=filters)
    registry.require_local_model_dir(request.base_model, model_dirs=model_dirs, field="base_model")
    require_enough_held_out(session, plan=plan, eval_fraction=request.eval_fraction, force=request.force)
    return jobs.enqueue(
        session,
        kind=KIND,
        project_id=project.id,
        config=request.model_dump(mode="json"),
        created_by_id=created_by_id,
    )


def register_reward_model(session: Session, job: Job, artifact: str | None) -> None:
    registry.register_from_job(session, job=job, artifact=artifact, kind=ModelKind.reward)
