"""Generation jobs: K completions for every prompt short of them, stored as the worker reports them."""

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict
from app.evaluations.models import EvaluationRound
from app.jobs import service as jobs
from app.jobs.kinds import require_kind
from app.jobs.models import Job
from app.models_registry.service import generation_model
from app.projects.models import Project
from app.prompts import service as prompts
from app.prompts.schemas import GeneratedForPrompt, GeneratedResult

KIND = "generate"


def queue_generation(
    session: Session, *, project: Project, created_by_id: int | None, model_dirs: Sequence[Path] = ()
) -> tuple[Job, bool]:
    """Queue a job that fills every prompt with fewer than K completions (or return the one queued)."""
    existing = jobs.active_job(session, project_id=project.id, kind=KIND)
    if existing is not None:
        return existing, False
    config = {
        "k": project.completions_per_prompt,
        "generation": dict(project.generation),
        **generation_model(session, project.generation.get("model", "default"), model_dirs=model_dirs),
    }
    job = jobs.enqueue(session, kind=KIND, project_id=project.id, config=config, created_by_id=created_by_id)
    return job, True


def store_completions(
    session: Session, *, job: Job, items: list[GeneratedForPrompt], attempt: int, holder_id: int
) -> GeneratedResult:
    """A generate job's results; also renews the lease."""
    require_kind(job, KIND)
    jobs.renew_lease(session, job=job, attempt=attempt, holder_id=holder_id)
    project = session.get(Project, job.project_id)
    models = job.config.get("models")  # an evaluation round's job: one completion per model
    if models is None:
        _refuse_one_model_job_on_a_round(session, project_id=project.id)
    return prompts.add_generated_completions(
        session,
        project=project,
        items=items,
        model=job.config.get("model", "default"),
        settings={key: value for key, value in job.config.get("generation", {}).items() if key != "model"},
        models=[entry["model"] for entry in models] if models else None,
    )


def _refuse_one_model_job_on_a_round(session: Session, *, project_id: int) -> None:
    """A round's completions come only from its two-model jobs: a plain generation job (the project
    page's "Generate completions" on the round's project) would fill both slots with one model."""
    if session.scalar(select(EvaluationRound.id).where(EvaluationRound.round_project_id == project_id)):
        raise Conflict(
            f"Project {project_id} is an evaluation round: its completions come from the round's two "
            "models. Generate them from the round (POST /evaluations/{id}/generate), not the project.",
            code="evaluation_round_generation",
        )
