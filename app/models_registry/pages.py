"""The Models page: every registered policy and reward model, with its held-out figures."""

from fastapi import APIRouter, Request
from sqlalchemy import select

from app.dependencies import CallerDep, ProjectReader, SessionDep
from app.models_registry import service
from app.models_registry.models import ModelVersion
from app.models_registry.quality import HeldOut, chance_verdict, held_out
from app.projects.models import Project
from app.web import render, templates

router = APIRouter(include_in_schema=False)


def held_out_of(version: ModelVersion) -> HeldOut | None:
    return held_out(version.kind, version.metrics)


def at_chance_because(version: ModelVersion) -> str | None:
    return chance_verdict(version.kind, version.metrics)


# The Models page, the run page and the PPO card show a reward model's figures the same way.
templates.env.globals["held_out_of"] = held_out_of
templates.env.globals["at_chance_because"] = at_chance_because


@router.get("/models")
def models_page(request: Request, caller: CallerDep, _reader: ProjectReader, session: SessionDep):
    versions = service.list_models(session)
    names = {project_id: name for project_id, name in session.execute(select(Project.id, Project.name))}
    return render(request, "runs/models.html", caller, versions=versions, project_names=names)
