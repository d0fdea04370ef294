"""The Models page: every registered policy and reward model, with its held-out figures."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.dependencies import AdminUser, CallerDep, ProjectReader, SessionDep, SettingsDep
from app.errors import PrefLabError
from app.forms import FormRefused, form_errors
from app.ids import parse_id
from app.models_registry import service
from app.models_registry.importing import import_model
from app.models_registry.models import ModelVersion
from app.models_registry.quality import HeldOut, chance_verdict, held_out
from app.models_registry.schemas import ModelImport
from app.projects.models import Project
from app.web import redirect, render, templates

router = APIRouter(include_in_schema=False)


def held_out_of(version: ModelVersion) -> HeldOut | None:
    return held_out(version.metrics)


def at_chance_because(version: ModelVersion) -> str | None:
    return chance_verdict(version.kind, version.metrics, version.origin)


# The Models page, the run page and the PPO card show a reward model's figures the same way.
templates.env.globals["held_out_of"] = held_out_of
templates.env.globals["at_chance_because"] = at_chance_because


NOTICES = {"imported": "Model registered: it can be used wherever a trained version can."}


@router.get("/models")
def models_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    session: SessionDep,
    notice: str | None = None,
):
    return render(request, "runs/models.html", caller, notice=NOTICES.get(notice or ""), **_context(session))


def _context(session: Session) -> dict[str, Any]:
    versions = service.list_models(session)
    names = {project_id: name for project_id, name in session.execute(select(Project.id, Project.name))}
    return {"versions": versions, "project_names": names, "typed": {}, "import_errors": None}


@router.post("/models/import")
def import_form(
    admin: AdminUser,
    session: SessionDep,
    settings: SettingsDep,
    kind: Annotated[str, Form()] = "",
    path: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    reward_label: Annotated[str, Form()] = "",
):
    """The Models page's import form: the API's `ModelImport`, refusals shown in the form as typed."""
    typed = {"kind": kind, "path": path, "name": name, "reward_label": reward_label}
    label = reward_label.strip()
    try:
        body = ModelImport(
            kind=kind,
            path=path.strip(),
            name=name.strip() or None,
            reward_label=(index if (index := parse_id(label)) is not None else label) if label else None,
        )
        import_model(session, request=body, model_dirs=settings.allowed_model_dirs)
    except (ValidationError, PrefLabError) as error:
        errors = form_errors(error)
        raise FormRefused(
            error,
            template="runs/models.html",
            context=lambda s: _context(s) | {"typed": typed, "import_errors": errors, "notice": None},
        ) from None
    return redirect("/models?notice=imported")
