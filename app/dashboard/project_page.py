"""The project page and how its context is built (also for a refused card: app.forms, app.runs)."""

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session

from app.dashboard import jobs_card, team_card
from app.dashboard.prompt_table import prompt_table
from app.dependencies import CallerDep, ProjectReader, SessionDep
from app.forms import page
from app.jobs import kinds
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.web import render

router = APIRouter(include_in_schema=False)

NOTICES = {"created": "Project created.", "saved": "Changes saved.", **jobs_card.NOTICES}


@router.get("/projects/{project_id}")
def project_page(
    request: Request,
    caller: CallerDep,
    _reader: ProjectReader,
    project: ProjectDep,
    session: SessionDep,
    notice: str | None = None,
):
    return render(
        request,
        "projects/detail.html",
        caller,
        notice=NOTICES.get(notice or ""),
        **project_page_context(session, project),
    )


@page("project")
def project_page_context_by_id(session: Session, *, project_id: int) -> dict[str, Any]:
    return project_page_context(session, service.get_project(session, project_id))


def project_page_context(session: Session, project: Project) -> dict[str, Any]:
    counts = service.project_counts(session, [project.id])[project.id]
    cards = kinds.cards()
    context = {
        "project": project,
        "counts": counts,
        "progress": service.ready_share(counts),
        "current": service.current_instructions(project),
        "versions": list(reversed(project.instruction_versions)),
        "authors": service.author_names(session, project.instruction_versions),
        **prompt_table(session, project),
        "upload_result": None,
        # each kind's card on the page (app.jobs.kinds), with what it needs
        "kind_cards": [kind.card for kind in cards],
        **jobs_card.jobs_context(session, project, counts=counts),
        **team_card.team_context(session, project),
    }
    for kind in cards:
        if kind.card_context is not None:
            context.update(kind.card_context(session, project))
    return context
