"""The Labelers page of a project: each labeler's quality figures and status at a glance, flagged ones
first, with the admin's override (app/agreement/labelers.py)."""

from typing import Annotated

from fastapi import APIRouter, Form, Request

from app.agreement import labelers
from app.agreement.models import LABELER_STATUSES
from app.dependencies import AdminUser, CallerDep, ProjectReader, SessionDep
from app.ids import Id
from app.projects.dependencies import ProjectDep
from app.web import redirect, render

router = APIRouter(include_in_schema=False)


@router.get("/projects/{project_id}/labelers")
def labelers_page(
    request: Request, caller: CallerDep, _reader: ProjectReader, project: ProjectDep, session: SessionDep
):
    rows = labelers.project_labelers(session, project=project)
    return render(
        request,
        "agreement/labelers.html",
        caller,
        project=project,
        labelers=rows,
        flagged=sum(row.status != "ok" for row in rows),
        statuses=LABELER_STATUSES,
    )


@router.post("/projects/{project_id}/labelers/{user_id}")
def set_status_form(
    _caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    user_id: Id,
    session: SessionDep,
    status: Annotated[str, Form()] = "",
):
    """`status` empty: back to what the rules say."""
    labelers.set_status(session, project=project, user_id=user_id, status=status or None)
    return redirect(f"/projects/{project.id}/labelers")
