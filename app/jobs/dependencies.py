"""Dependencies that load a job from the path, or refuse: the route gets the row, never an id."""

from typing import Annotated

from fastapi import Depends

from app.dependencies import SessionDep
from app.errors import NotFound
from app.ids import Id
from app.jobs import service
from app.jobs.models import Job
from app.projects.dependencies import ProjectDep


def valid_job_id(job_id: Id, session: SessionDep) -> Job:
    """The job in the path (404 if there is none)."""
    return service.get_job(session, job_id)


def valid_project_job(project: ProjectDep, job: Annotated[Job, Depends(valid_job_id)]) -> Job:
    """The job in the path, which must be one of the project's in the path (404 otherwise)."""
    if job.project_id != project.id:
        raise NotFound(f"Project {project.id} has no job with id {job.id}.", code="job_not_found")
    return job


JobDep = Annotated[Job, Depends(valid_job_id)]
ProjectJobDep = Annotated[Job, Depends(valid_project_job)]
