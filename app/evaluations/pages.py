"""Pages: the evaluation card on a project's page (loaded by htmx), the rounds page with the form that
starts a round, and one round's page. The same service functions as the JSON API do the work."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, CallerDep, ProjectReader, SessionDep, SettingsDep
from app.errors import PrefLabError
from app.evaluations import service
from app.evaluations.models import EvaluationRound
from app.evaluations.schemas import EvaluationCreate
from app.forms import FormRefused, as_domain_error
from app.ids import Id, parse_id
from app.models_registry import service as models
from app.models_registry.models import ModelKind
from app.projects import service as projects
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.web import is_htmx, redirect, render

router = APIRouter(include_in_schema=False)

NOTICES = {
    "started": "Evaluation round started: a worker generates one completion per prompt from each model.",
    "generation_queued": "Generation queued for the prompts that still lack a completion.",
}


class RoundForm(BaseModel):
    """The form as typed (strings), so a refused form comes back as the admin left it."""

    candidate: str = ""
    baseline: str = ""
    prompts: str = "50"
    rankings_per_prompt: str = ""

    def payload(self) -> dict[str, Any]:
        baseline = self.baseline.strip()
        return {
            "candidate": self.candidate.strip(),
            "baseline": parse_id(baseline) or baseline or None,
            "prompts": self.prompts.strip() or 50,
            "rankings_per_prompt": self.rankings_per_prompt.strip() or None,
        }


def valid_round(evaluation_id: Id, session: SessionDep) -> EvaluationRound:
    return service.get_round(session, evaluation_id)


RoundDep = Annotated[EvaluationRound, Depends(valid_round)]


def card_context(
    session: Session,
    project: Project,
    *,
    form: RoundForm | None = None,
    error: PrefLabError | None = None,
    notice: str | None = None,
) -> dict[str, Any]:
    """The evaluation card: for a round's own project, the round and a link back; otherwise the
    project's rounds and (for admins) the form that starts one."""
    own = service.round_of_project(session, project.id)
    own_out = service.round_out(session, own) if own else None
    rounds = [service.round_out(session, r) for r in service.list_rounds(session, project=project)]
    return {
        "project": project,
        "own_round": own_out,
        "parent": projects.get_project(session, own.project_id) if own else None,
        "rounds": rounds,
        "polling": any(r.status == "generating" for r in [*rounds, *([own_out] if own_out else [])]),
        "policies": models.list_models(session, kind=ModelKind.policy),
        "form": form or RoundForm(rankings_per_prompt=str(project.rankings_per_prompt)),
        "form_error": error,
        "notice": NOTICES.get(notice or ""),
    }


@router.get("/projects/{project_id}/evaluations")
def evaluations_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    project: ProjectDep,
    session: SessionDep,
    notice: str | None = None,
):
    """The card alone for htmx (the project page loads it, and it polls while a round generates),
    the whole page otherwise (it works without JavaScript)."""
    context = card_context(session, project, notice=notice)
    template = "evaluations/_card_fragment.html" if is_htmx(request) else "evaluations/page.html"
    return render(request, template, caller, **context)


@router.post("/projects/{project_id}/evaluations")
def start_round_form(
    request: Request,
    caller: CallerDep,
    admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[RoundForm, Form()],
):
    try:
        body = EvaluationCreate.model_validate(form.payload())
        round_ = service.create_round(
            session, project=project, request=body, author=admin, model_dirs=settings.allowed_model_dirs
        )
    except (ValidationError, PrefLabError) as error:
        raise _refused(request, project.id, form, as_domain_error(error)) from None
    if is_htmx(request):
        return render(
            request,
            "evaluations/_card_fragment.html",
            caller,
            **card_context(session, project, notice="started"),
        )
    return redirect(f"/evaluations/{round_.id}?notice=started")


def _refused(request: Request, project_id: int, form: RoundForm, error: PrefLabError) -> FormRefused:
    """The card (or its page) again, with the form as the admin left it; nothing was written."""

    def context(session: Session) -> dict[str, Any]:
        project = projects.get_project(session, project_id)
        return card_context(session, project, form=form, error=error)

    template = "evaluations/_card_fragment.html" if is_htmx(request) else "evaluations/page.html"
    return FormRefused(error, template=template, context=context)


@router.get("/evaluations/{evaluation_id}")
def round_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    round_: RoundDep,
    session: SessionDep,
    notice: str | None = None,
):
    return render(
        request,
        "evaluations/round.html",
        caller,
        notice=NOTICES.get(notice or ""),
        **service.context_of(session, round_),
    )


@router.post("/evaluations/{evaluation_id}/generate")
def generate_form(
    caller: CallerDep, admin: AdminUser, round_: RoundDep, session: SessionDep, settings: SettingsDep
):
    service.queue_round_generation(
        session, round_=round_, created_by_id=admin.id, model_dirs=settings.allowed_model_dirs
    )
    return redirect(f"/evaluations/{round_.id}?notice=generation_queued")
