"""JSON API: queue generation for a project (admin); a generate job's completions (worker role)."""

from fastapi import APIRouter, status

from app.dependencies import AdminUser, SessionDep, SettingsDep, WorkerUser
from app.jobs.dependencies import JobDep
from app.jobs.schemas import JobCreated
from app.projects.dependencies import ProjectDep
from app.prompts.schemas import GeneratedResult
from app.runs.generation import service
from app.runs.generation.schemas import GeneratedBatch

router = APIRouter(tags=["jobs"])


@router.post(
    "/projects/{project_id}/generate", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def generate(admin: AdminUser, project: ProjectDep, session: SessionDep, settings: SettingsDep):
    job, _ = service.queue_generation(
        session, project=project, created_by_id=admin.id, model_dirs=settings.allowed_model_dirs
    )
    return JobCreated(job_id=job.id)


@router.post("/jobs/{job_id}/completions", response_model=GeneratedResult)
def store_completions(worker: WorkerUser, job: JobDep, body: GeneratedBatch, session: SessionDep):
    """A generate job's results; also renews the lease."""
    return service.store_completions(
        session, job=job, items=body.items, attempt=body.attempt, holder_id=worker.id
    )
