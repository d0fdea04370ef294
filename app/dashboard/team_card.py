"""The project page's Team card: the project's members (app/projects/members.py), added and removed by
admins. No members: the project is open to every labeler."""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role, User
from app.dependencies import AdminUser, CallerDep, SessionDep
from app.errors import PrefLabError
from app.forms import FormRefused, page_context
from app.ids import Id
from app.projects import members
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.web import redirect

router = APIRouter(include_in_schema=False)


def team_context(session: Session, project: Project) -> dict[str, Any]:
    team = members.list_members(session, project=project)
    on_team = {user.id for user in team}
    labelers = session.scalars(
        select(User).where(User.role == Role.labeler.value, User.is_active.is_(True)).order_by(User.username)
    )
    return {"members": team, "addable_labelers": [user for user in labelers if user.id not in on_team]}


@router.post("/projects/{project_id}/members")
def add_member_form(
    request: Request,
    _caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    user_id: Annotated[str, Form()] = "",
):
    try:
        members.add_member(session, project=project, user_id=int(user_id) if user_id.isdigit() else 0)
    except PrefLabError as error:
        message, project_id = error.message, project.id  # the handler rolls back: no lazy loads after
        raise FormRefused(
            error,
            template="projects/detail.html",
            context=lambda s: page_context("project", s, project_id=project_id) | {"team_error": message},
        ) from None
    return redirect(f"/projects/{project.id}#team")


@router.post("/projects/{project_id}/members/{user_id}/remove")
def remove_member_form(
    _caller: CallerDep, _admin: AdminUser, project: ProjectDep, user_id: Id, session: SessionDep
):
    members.remove_member(session, project=project, user_id=user_id)
    return redirect(f"/projects/{project.id}#team")
