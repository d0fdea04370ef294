"""Pages: start a reward-model or PPO run, watch a training run's curves and samples, list model versions."""

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, Caller, CallerDep, ProjectReader, SessionDep
from app.errors import InvalidInput, PrefLabError
from app.ids import Id, parse_id
from app.jobs import service as jobs
from app.jobs.charts import metric_chart
from app.jobs.models import FINISHED
from app.models_registry import service
from app.models_registry.models import ModelVersion
from app.models_registry.quality import HeldOut, chance_verdict, held_out
from app.models_registry.schemas import PPOTrainRequest, RewardTrainRequest
from app.projects import service as projects
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.projects.schemas import ProjectUpdate
from app.web import is_htmx, redirect, render, templates

router = APIRouter(include_in_schema=False)


def held_out_of(version: ModelVersion) -> HeldOut | None:
    return held_out(version.kind, version.metrics)


def at_chance_because(version: ModelVersion) -> str | None:
    return chance_verdict(version.kind, version.metrics)


# The Models page, the run page and the PPO card show a reward model's figures the same way.
templates.env.globals["held_out_of"] = held_out_of
templates.env.globals["at_chance_because"] = at_chance_because

CHARTS = {
    "reward": [("Loss", ["loss/train", "loss/eval"]), ("Accuracy", ["accuracy/train", "accuracy/eval"])],
    "ppo": [
        ("Reward", ["reward/score"]),
        ("KL to the reference", ["objective/kl"]),
        ("Entropy per token", ["objective/entropy_per_token"]),
        ("Held-out reward and KL", ["eval/reward", "eval/kl"]),
    ],
    "generate": [("Completions", ["generate/completions"])],
}


def filled(**fields: str) -> dict[str, str]:
    """The form fields a person filled in: an empty one takes the API's default (the schema is its one
    source, the form shows it as the field's value)."""
    return {name: value.strip() for name, value in fields.items() if value.strip()}


def defaults_of(schema: type[BaseModel]) -> dict[str, object]:
    return {name: field.default for name, field in schema.model_fields.items()}


templates.env.globals["reward_defaults"] = defaults_of(RewardTrainRequest)
templates.env.globals["ppo_defaults"] = defaults_of(PPOTrainRequest)


@router.post("/projects/{project_id}/train/reward")
def start_reward_run(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    base_model: Annotated[str, Form()] = "",
    epochs: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    max_length: Annotated[str, Form()] = "",
    exclude_flags: Annotated[list[str] | None, Form()] = None,
    min_agreement: Annotated[str, Form()] = "",
):
    def queue() -> str:
        body = RewardTrainRequest(
            **filled(
                base_model=base_model, epochs=epochs, learning_rate=learning_rate, max_length=max_length
            ),
            filters={"exclude_flags": exclude_flags or [], "min_agreement": min_agreement or None},
        )
        job = service.queue_reward_training(session, project=project, request=body, created_by_id=admin.id)
        return f"/jobs/{job.id}"

    return _submit(request, caller, session, project, queue)


@router.post("/projects/{project_id}/train/ppo")
def start_ppo_run(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    reward_model: Annotated[str, Form()] = "",
    policy: Annotated[str, Form()] = "",
    steps: Annotated[str, Form()] = "",
    batch_size: Annotated[str, Form()] = "",
    minibatch_size: Annotated[str, Form()] = "",
    max_new_tokens: Annotated[str, Form()] = "",
    learning_rate: Annotated[str, Form()] = "",
    kl_coef: Annotated[str, Form()] = "",
    target_kl: Annotated[str, Form()] = "",
    kl_horizon: Annotated[str, Form()] = "",
    lora_r: Annotated[str, Form()] = "",
    fixed_kl: Annotated[bool, Form()] = False,
    force: Annotated[bool, Form()] = False,
):
    def queue() -> str:
        fields = filled(
            policy=policy,
            steps=steps,
            batch_size=batch_size,
            minibatch_size=minibatch_size,
            max_new_tokens=max_new_tokens,  # empty: the project's
            learning_rate=learning_rate,
            kl_coef=kl_coef,
            target_kl=target_kl,
            kl_horizon=kl_horizon,  # empty: follows the run's length
            lora_r=lora_r,
        )
        if "policy" in fields:
            fields["policy"] = parse_id(fields["policy"]) or fields["policy"]
        if fixed_kl:
            fields["target_kl"] = None  # a fixed beta: kl_coef throughout
        body = PPOTrainRequest(reward_model=reward_model or None, **fields, force=force)
        job = service.queue_ppo_training(session, project=project, request=body, created_by_id=admin.id)
        return f"/jobs/{job.id}"

    return _submit(request, caller, session, project, queue)


@router.post("/projects/{project_id}/generation-model")
def use_for_generation(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    model_id: Annotated[int, Form()],
):
    """Close the loop: the project's next completions come from this policy version."""

    def switch() -> str:
        changes = ProjectUpdate(generation={"model": model_id})
        projects.update_project(session, project=project, changes=changes, author=admin)
        return f"/projects/{project.id}"

    return _submit(request, caller, session, project, switch)


def _submit(
    request: Request, caller: Caller, session: Session, project: Project, action: Callable[[], str]
) -> Response:
    """Run a form's action and redirect where it says; a refused form (422, 404...) writes nothing and
    shows the error page with its status."""
    try:
        return redirect(action())
    except ValidationError as exc:
        return _project_with_error(request, caller, session, project, InvalidInput.from_pydantic(exc))
    except PrefLabError as exc:
        return _project_with_error(request, caller, session, project, exc)


def _project_with_error(
    request: Request, caller: Caller, session: Session, project: Project, error: PrefLabError
) -> Response:
    session.rollback()
    return render(request, "error.html", caller, status_code=error.status_code, error=error)


@router.get("/jobs/{job_id}")
def run_page(request: Request, caller: CallerDep, _reader: ProjectReader, job_id: Id, session: SessionDep):
    jobs.requeue_expired(session)
    job = jobs.get_job(session, job_id)
    events = jobs.events(session, job=job)
    charts = [
        chart
        for title, keys in CHARTS.get(job.kind, [])
        if (chart := metric_chart(title, events, keys)) is not None
    ]
    logs = [e for e in events if e.log][-20:]
    # A PPO run reports a few sample completions every N steps; the page shows the latest report.
    samples = next((e.metrics for e in reversed(events) if isinstance(e.metrics.get("samples"), list)), None)
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
        samples=samples,
        model=model,
        project=project,
        active=job.status not in FINISHED,
    )


@router.get("/models")
def models_page(request: Request, caller: CallerDep, _reader: ProjectReader, session: SessionDep):
    versions = service.list_models(session)
    names = {p.id: p.name for p in projects.list_projects(session)}
    return render(request, "runs/models.html", caller, versions=versions, project_names=names)
