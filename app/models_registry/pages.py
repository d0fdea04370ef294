"""Pages: start a reward-model run, watch a training run's curves, list model versions."""

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, Caller, CallerDep, ProjectReader, SessionDep
from app.errors import InvalidInput, PrefLabError
from app.jobs import service as jobs
from app.jobs.charts import metric_chart
from app.jobs.models import FINISHED
from app.models_registry import service
from app.models_registry.schemas import RewardTrainRequest
from app.projects import service as projects
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

CHARTS = {
    "reward": [("Loss", ["loss/train", "loss/eval"]), ("Accuracy", ["accuracy/train", "accuracy/eval"])],
    "ppo": [("Reward", ["reward/score"]), ("KL to the reference", ["objective/kl"])],
    "generate": [("Completions", ["generate/completions"])],
}


@router.post("/projects/{project_id}/train/reward")
def start_reward_run(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    base_model: Annotated[str, Form()] = "default",
    epochs: Annotated[str, Form()] = "1",
    learning_rate: Annotated[str, Form()] = "2e-5",
    max_length: Annotated[str, Form()] = "256",
    exclude_flags: Annotated[list[str] | None, Form()] = None,
    min_agreement: Annotated[str, Form()] = "",
):
    try:
        body = RewardTrainRequest(
            base_model=base_model.strip() or "default",
            epochs=epochs,
            learning_rate=learning_rate,
            max_length=max_length,
            filters={"exclude_flags": exclude_flags or [], "min_agreement": min_agreement or None},
        )
        job = service.queue_reward_training(session, project=project, request=body, created_by_id=admin.id)
    except ValidationError as exc:
        return _project_with_error(request, caller, session, project, InvalidInput.from_pydantic(exc))
    except PrefLabError as exc:
        return _project_with_error(request, caller, session, project, exc)
    return redirect(f"/jobs/{job.id}")


def _project_with_error(
    request: Request, caller: Caller, session: Session, project: Project, error: PrefLabError
) -> Response:
    session.rollback()
    return render(request, "error.html", caller, status_code=error.status_code, error=error)


@router.get("/jobs/{job_id}")
def run_page(request: Request, caller: CallerDep, _reader: ProjectReader, job_id: int, session: SessionDep):
    jobs.requeue_expired(session)
    job = jobs.get_job(session, job_id)
    events = jobs.events(session, job=job)
    charts = [
        chart
        for title, keys in CHARTS.get(job.kind, [])
        if (chart := metric_chart(title, events, keys)) is not None
    ]
    logs = [e for e in events if e.log][-20:]
    model = service.get_model(session, job.model_id) if job.model_id else None
    project = projects.get_project(session, job.project_id) if job.project_id else None
    template = "runs/_run_fragment.html" if is_htmx(request) else "runs/page.html"
    return render(
        request,
        template,
        caller,
        job=job,
        charts=charts,
        logs=logs,
        model=model,
        project=project,
        active=job.status not in FINISHED,
    )


@router.get("/models")
def models_page(request: Request, caller: CallerDep, _reader: ProjectReader, session: SessionDep):
    versions = service.list_models(session)
    names = {p.id: p.name for p in projects.list_projects(session)}
    return render(request, "runs/models.html", caller, versions=versions, project_names=names)
