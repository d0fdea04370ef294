from typing import Annotated

from fastapi import Depends

from app.dependencies import SessionDep
from app.ids import Id
from app.projects import service
from app.projects.models import Project


def valid_project_id(project_id: Id, session: SessionDep) -> Project:
    """Load the project named in the path, or answer 404."""
    return service.get_project(session, project_id)


ProjectDep = Annotated[Project, Depends(valid_project_id)]
