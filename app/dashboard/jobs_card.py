"""The jobs card of the project page: recent jobs of every kind, generation queued from it, retry and
cancel. While a job is queued or running the card polls itself."""

from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from app.dashboard.prompt_table import prompt_table
from app.dependencies import AdminUser, Caller, CallerDep, SessionDep, SettingsDep
from app.errors import PrefLabError
from app.forms import FormRefused, page_context
from app.jobs import service as job_service
from app.jobs.dependencies import ProjectJobDep
from app.jobs.models import Job, JobStatus
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.projects.schemas import ProjectCounts
from app.runs.generation.service import KIND as GENERATE
from app.runs.generation.service import queue_generation
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

NOTICES = {
    "generation_queued": "Generation queued: a worker will fill every prompt that lacks completions.",
    "generation_active": "A generation job is already queued or running; no second one was queued.",
    "job_retried": "The job is queued again.",
    "job_cancelled": "The job was cancelled.",
}
JOBS_SHOWN = 10  # the card lists this many recent jobs
ACTIVE_JOBS = (JobStatus.queued.value, JobStatus.running.value)
# The metrics a job row shows first (when the worker reported them), with their labels.
JOB_METRICS = {
    "generate/completions": "completions",
    "generate/prompts": "prompts",
    "generate/tokens_per_second": "tokens/s",
    "generate/prompts_short": "prompts short of K",
}
MAX_JOB_METRICS = 6


def jobs_context(
    session: Session, project: Project, *, counts: ProjectCounts | None = None
) -> dict[str, Any]:
    """The generation card: recent jobs, whether one is active (then the card polls), what is missing."""
    counts = counts or service.project_counts(session, [project.id])[project.id]
    jobs = job_service.list_jobs(session, project_id=project.id, limit=JOBS_SHOWN)
    return {
        "jobs": [_job_row(job) for job in jobs],
        "jobs_active": any(job.status in ACTIVE_JOBS for job in jobs),
        "generating": any(job.status in ACTIVE_JOBS and job.kind == GENERATE for job in jobs),
        "prompts_missing": counts.prompts - counts.prompts_ready,
        "jobs_notice": None,
        "jobs_error": None,
    }


def _job_row(job: Job) -> dict[str, Any]:
    metrics = job.metrics or {}
    keys = [key for key in JOB_METRICS if key in metrics]
    keys += [key for key in sorted(metrics) if key not in JOB_METRICS and _shown_metric(metrics[key])]
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "active": job.status in ACTIVE_JOBS,
        "progress": min(max(job.progress or 0.0, 0.0), 1.0),
        "metrics": [
            (JOB_METRICS.get(key, key), _metric_value(metrics[key])) for key in keys[:MAX_JOB_METRICS]
        ],
        "error": job.error,
        "attempts": job.attempts,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "can_retry": job.status in (JobStatus.failed.value, JobStatus.cancelled.value),
        "can_cancel": job.status in ACTIVE_JOBS,
    }


def _shown_metric(value: Any) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool) and len(str(value)) <= 40


def _metric_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


@router.get("/projects/{project_id}/jobs")
def jobs_fragment(
    request: Request, caller: CallerDep, _admin: AdminUser, project: ProjectDep, session: SessionDep
):
    """The card; while a job is queued or running it polls this route every two seconds."""
    job_service.requeue_expired(session)  # a job whose worker went silent shows as queued again
    return _jobs_response(request, caller, session, project)


@router.post("/projects/{project_id}/generate")
def generate_form(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
):
    _, queued = queue_generation(
        session, project=project, created_by_id=admin.id, model_dirs=settings.allowed_model_dirs
    )
    return _after_job_action(
        request, caller, session, project, notice="generation_queued" if queued else "generation_active"
    )


JOB_ACTIONS: dict[str, tuple[Callable[..., Job], str]] = {
    "retry": (job_service.retry, "job_retried"),
    "cancel": (job_service.cancel, "job_cancelled"),
}


@router.post("/projects/{project_id}/jobs/{job_id}/{action}")
def job_action_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    job: ProjectJobDep,
    session: SessionDep,
    action: Literal["retry", "cancel"],
):
    """Retry or cancel: the service call, then the card (or the refusal, with nothing changed: the card
    for htmx, the whole project page without JavaScript)."""
    act, notice = JOB_ACTIONS[action]
    try:
        act(session, job=job)
    except PrefLabError as error:
        raise _refused(request, error, project_id=project.id) from None
    return _after_job_action(request, caller, session, project, notice=notice)


def _refused(request: Request, error: PrefLabError, *, project_id: int) -> FormRefused:
    if not is_htmx(request):
        return FormRefused(
            error,
            template="projects/detail.html",
            context=lambda session: (
                page_context("project", session, project_id=project_id) | {"jobs_error": error.message}
            ),
        )

    def card(session: Session) -> dict[str, Any]:
        return _card_context(session, service.get_project(session, project_id), error=error)

    return FormRefused(error, template="projects/_jobs_fragment.html", context=card)


def _after_job_action(request: Request, caller: Caller, session: Session, project: Project, *, notice: str):
    if is_htmx(request):
        return _jobs_response(request, caller, session, project, notice=NOTICES[notice])
    return redirect(f"/projects/{project.id}?notice={notice}#project-jobs")


def _jobs_response(
    request: Request, caller: Caller, session: Session, project: Project, *, notice: str | None = None
) -> Response:
    context = _card_context(session, project, notice=notice, htmx=is_htmx(request))
    return render(request, "projects/_jobs_fragment.html", caller, **context)


def _card_context(
    session: Session,
    project: Project,
    *,
    notice: str | None = None,
    error: PrefLabError | None = None,
    htmx: bool = True,
) -> dict[str, Any]:
    """The card alone (for htmx and for GET), with the counts and, once no job is active, the prompt
    table, swapped in out of band."""
    counts = service.project_counts(session, [project.id])[project.id]
    context = jobs_context(session, project, counts=counts)
    context.update(jobs_notice=notice, jobs_error=error.message if error else None, project=project)
    if htmx:
        context.update(counts=counts, progress=service.ready_share(counts), oob_counts=True)
        if not context["jobs_active"]:
            context.update(prompt_table(session, project), oob_prompts=True)
    return context
