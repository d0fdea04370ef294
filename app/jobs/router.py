"""JSON API: queueing jobs (admin) and the worker protocol (worker role)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.auth.models import Role, User
from app.dependencies import AdminUser, SessionDep, WorkerUser, require_roles
from app.errors import InvalidInput
from app.evaluations import service as evaluations
from app.ids import Id
from app.jobs import service
from app.jobs.models import JobKind
from app.jobs.schemas import (
    ClaimedJob,
    ClaimRequest,
    JobComplete,
    JobCreated,
    JobEventIn,
    JobEventOut,
    JobFail,
    JobOut,
    WorkerReport,
)
from app.models_registry import service as models_service
from app.pagination import Page
from app.projects.dependencies import ProjectDep
from app.projects.models import Project
from app.prompts import service as prompt_service
from app.prompts.schemas import GeneratedBatch, GeneratedResult

router = APIRouter(tags=["jobs"])
JobReader = Annotated[User, Depends(require_roles(Role.admin, Role.worker))]


# --- admin ---------------------------------------------------------------------------------------


@router.post(
    "/projects/{project_id}/generate", status_code=status.HTTP_202_ACCEPTED, response_model=JobCreated
)
def generate(admin: AdminUser, project: ProjectDep, session: SessionDep):
    job, _ = service.queue_generation(session, project=project, created_by_id=admin.id)
    return JobCreated(job_id=job.id)


@router.get("/projects/{project_id}/jobs", response_model=Page[JobOut])
def project_jobs(_admin: AdminUser, project: ProjectDep, session: SessionDep):
    return Page(items=service.list_jobs(session, project_id=project.id), next_cursor=None)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(_reader: JobReader, job_id: Id, session: SessionDep):
    service.requeue_expired(session)
    return service.get_job(session, job_id)


@router.get("/jobs/{job_id}/metrics", response_model=Page[JobEventOut])
def job_metrics(_reader: JobReader, job_id: Id, session: SessionDep):
    return Page(items=service.events(session, job=service.get_job(session, job_id)), next_cursor=None)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel(_admin: AdminUser, job_id: Id, session: SessionDep):
    return service.cancel(session, job=service.get_job(session, job_id))


@router.post("/jobs/{job_id}/retry", response_model=JobOut)
def retry(_admin: AdminUser, job_id: Id, session: SessionDep):
    return service.retry(session, job=service.get_job(session, job_id))


# --- worker protocol -----------------------------------------------------------------------------


@router.post("/worker/claim", response_model=ClaimedJob, responses={204: {"description": "No job queued"}})
def claim(worker: WorkerUser, body: ClaimRequest, session: SessionDep):
    job = service.claim(session, kinds=body.kinds, worker=body.worker, holder_id=worker.id)
    if job is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return ClaimedJob(
        id=job.id,
        kind=job.kind,
        project_id=job.project_id,
        config=job.config,
        attempts=job.attempts,
        lease_expires_at=job.lease_expires_at,
    )


@router.post("/jobs/{job_id}/events", status_code=status.HTTP_204_NO_CONTENT)
def report_event(worker: WorkerUser, job_id: Id, body: JobEventIn, session: SessionDep):
    service.record_event(
        session,
        job=service.get_job(session, job_id),
        progress=body.progress,
        metrics=body.metrics,
        log=body.log,
        attempt=body.attempt,
        holder_id=worker.id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/jobs/{job_id}/complete", response_model=JobOut)
def complete(worker: WorkerUser, job_id: Id, body: JobComplete, session: SessionDep):
    """Finish a job; a training job's model is registered as a version in the same transaction."""
    job = service.complete(
        session,
        job=service.get_job(session, job_id),
        artifact=body.artifact,
        metrics=body.metrics,
        attempt=body.attempt,
        holder_id=worker.id,
    )
    if job.kind in models_service.KIND_OF_JOB:
        models_service.register_from_job(session, job=job, artifact=body.artifact)
    return job


@router.post("/jobs/{job_id}/fail", response_model=JobOut)
def fail(worker: WorkerUser, job_id: Id, body: JobFail, session: SessionDep):
    return service.fail(
        session,
        job=service.get_job(session, job_id),
        error=body.error,
        attempt=body.attempt,
        holder_id=worker.id,
    )


@router.post("/jobs/{job_id}/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def heartbeat(worker: WorkerUser, job_id: Id, body: WorkerReport, session: SessionDep):
    """Renew the lease while a long step sends no events (409 once the job was cancelled or lost)."""
    service.renew_lease(
        session, job=service.get_job(session, job_id), attempt=body.attempt, holder_id=worker.id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/jobs/{job_id}/release", response_model=JobOut)
def release(worker: WorkerUser, job_id: Id, body: WorkerReport, session: SessionDep):
    return service.release(
        session, job=service.get_job(session, job_id), attempt=body.attempt, holder_id=worker.id
    )


@router.post("/jobs/{job_id}/completions", response_model=GeneratedResult)
def store_completions(worker: WorkerUser, job_id: Id, body: GeneratedBatch, session: SessionDep):
    """A generate job's results; also renews the lease."""
    job = service.get_job(session, job_id)
    if job.kind != JobKind.generate.value or job.project_id is None:
        raise InvalidInput(f"Job {job.id} is a {job.kind} job, not a generate job.", code="wrong_job_kind")
    service.renew_lease(session, job=job, attempt=body.attempt, holder_id=worker.id)
    evaluations.require_two_model_job(session, project_id=job.project_id, job=job)
    project = session.get(Project, job.project_id)
    models = job.config.get("models")  # an evaluation round's job: one completion per model
    return prompt_service.add_generated_completions(
        session,
        project=project,
        items=body.items,
        model=job.config.get("model", "default"),
        settings={key: value for key, value in job.config.get("generation", {}).items() if key != "model"},
        models=[entry["model"] for entry in models] if models else None,
    )
