"""JSON API: a project's team (app/projects/members.py)."""

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict

from app.dependencies import AdminUser, ProjectReader, SessionDep
from app.ids import Id
from app.pagination import Page
from app.projects import members
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["projects"])


class MemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str


@router.get("/projects/{project_id}/members", response_model=Page[MemberOut])
def list_members(_reader: ProjectReader, project: ProjectDep, session: SessionDep):
    """The project's labelers; none: the project is open to every labeler."""
    return Page(items=members.list_members(session, project=project), next_cursor=None)


@router.post("/projects/{project_id}/members", status_code=status.HTTP_201_CREATED, response_model=MemberOut)
def add_member(_admin: AdminUser, project: ProjectDep, body: MemberIn, session: SessionDep):
    return members.add_member(session, project=project, user_id=body.user_id)


@router.delete("/projects/{project_id}/members", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(_admin: AdminUser, project: ProjectDep, body: MemberIn, session: SessionDep):
    """API.md's form: the member in the body."""
    members.remove_member(session, project=project, user_id=body.user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/projects/{project_id}/members/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member_by_path(_admin: AdminUser, project: ProjectDep, user_id: Id, session: SessionDep):
    members.remove_member(session, project=project, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
