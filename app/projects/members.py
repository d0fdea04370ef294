"""Project membership: who a project's tasks are handed to.

A project with no members is open to every labeler (as before membership existed); once it has one,
only its members are handed its tasks and see it on the labeling screen. A labeler who is not a member
asking for the project by id gets 404, as for a project that does not exist. Removing a member stops
new tasks at once; the task in their hands (if any) expires as any other does.
"""

from sqlalchemy import ColumnElement, delete, exists, or_, select
from sqlalchemy.orm import Session

from app.auth.models import Role, User
from app.errors import InvalidInput, NotFound
from app.projects.models import Project, ProjectMember


def open_to(labeler_id: int, project_id_column: ColumnElement[int]) -> ColumnElement[bool]:
    """SQL: the project in ``project_id_column`` hands tasks to this labeler (no members, or a member)."""
    return or_(
        ~exists().where(ProjectMember.project_id == project_id_column),
        exists().where(ProjectMember.project_id == project_id_column, ProjectMember.user_id == labeler_id),
    )


def is_open_to(session: Session, *, project: Project, labeler: User) -> bool:
    return bool(session.scalar(select(open_to(labeler.id, Project.id)).where(Project.id == project.id)))


def require_open_to(session: Session, *, project: Project, labeler: User) -> None:
    """404 for a labeler outside the project's team: it does not exist for them."""
    if not is_open_to(session, project=project, labeler=labeler):
        raise NotFound(f"No project with id {project.id}.", code="project_not_found")


def list_members(session: Session, *, project: Project) -> list[User]:
    return list(
        session.scalars(
            select(User)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project.id)
            .order_by(User.username)
        )
    )


def add_member(session: Session, *, project: Project, user_id: int) -> User:
    """Add a labeler (422 for another role or an unknown user; adding one twice changes nothing)."""
    user = session.get(User, user_id)
    if user is None or user.role != Role.labeler.value:
        raise InvalidInput(
            f"User {user_id} is not a labeler: only labelers are handed tasks (see GET /users).",
            code="not_a_labeler",
            details={"field": "user_id"},
        )
    if session.get(ProjectMember, (project.id, user.id)) is None:
        session.add(ProjectMember(project_id=project.id, user_id=user.id))
        session.flush()
    return user


def remove_member(session: Session, *, project: Project, user_id: int) -> None:
    removed = session.execute(
        delete(ProjectMember).where(ProjectMember.project_id == project.id, ProjectMember.user_id == user_id)
    )
    if removed.rowcount == 0:
        raise NotFound(f"User {user_id} is not a member of project {project.id}.", code="member_not_found")
