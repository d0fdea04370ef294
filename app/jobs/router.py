"""JSON API: a job's state and curves (admin; workers read too), and the worker protocol (worker role).

Kind-specific routes (queueing a run, a generate job's completions) live in the kind's package.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.auth.models import Role, User
from app.dependencies import AdminUser, SessionDep, WorkerUser, require_roles
from app.jobs import kinds, service
from app.jobs.dependencies import JobDep
from app.jobs.schemas import (
    ClaimedJob,
    ClaimRequest,
    JobComplete,
    JobEventIn,
    JobEventOut,
    JobFail,
    JobOut,
    WorkerReport,
)
from app.pagination import Page
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["jobs"])
JobReader = Annotated[User, Depends(require_roles(Role.admin, Role.worker))]


# --- admin ---------------------------------------------------------------------------------------


@router.get("/projects/{project_id}/jobs", response_model=Page[JobOut])
def project_jobs(_admin: AdminUser, project: ProjectDep, session: SessionDep):
    return Page(items=service.list_jobs(session, project_id=project.id), next_cursor=None)


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(_reader: JobReader, job: JobDep, session: SessionDep):
    service.requeue_expired(session)
    session.refresh(job)
    return job


@router.get("/jobs/{job_id}/metrics", response_model=Page[JobEventOut])
def job_metrics(_reader: JobReader, job: JobDep, session: SessionDep):
    return Page(items=service.events(session, job=job), next_cursor=None)


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
def cancel(_admin: AdminUser, job: JobDep, session: SessionDep):
    return service.cancel(session, job=job)


@router.post("/jobs/{job_id}/retry", response_model=JobOut)
def retry(_admin: AdminUser, job: JobDep, session: SessionDep):
    return service.retry(session, job=job)


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
def report_event(worker: WorkerUser, job: JobDep, body: JobEventIn, session: SessionDep):
    service.record_event(
        session,
        job=job,
        progress=body.progress,
        metrics=body.metrics,
        log=body.log,
        attempt=body.attempt,
        holder_id=worker.id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/jobs/{job_id}/complete", response_model=JobOut)
def complete(worker: WorkerUser, job: JobDep, body: JobComplete, session: SessionDep):
    """Finish a job; what its kind does on success (a training run registers its model version)
    happens in the same transaction."""
    service.complete(
        session,
        job=job,
        artifact=body.artifact,
        metrics=body.metrics,
        attempt=body.attempt,
        holder_id=worker.id,
    )
    kind = kinds.get(job.kind)
    if kind is not None and kind.on_complete is not None:
        kind.on_complete(session, job, body.artifact)
    return job


@router.post("/jobs/{job_id}/fail", response_model=JobOut)
def fail(worker: WorkerUser, job: JobDep, body: JobFail, session: SessionDep):
    return service.fail(session, job=job, error=body.error, attempt=body.attempt, holder_id=worker.id)


@router.post("/jobs/{job_id}/heartbeat", status_code=status.HTTP_204_NO_CONTENT)
def heartbeat(worker: WorkerUser, job: JobDep, body: WorkerReport, session: SessionDep):
    """Renew the lease while a long step sends no events (409 once the job was cancelled or lost)."""
    service.renew_lease(session, job=job, attempt=body.attempt, holder_id=worker.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/jobs/{job_id}/release", response_model=JobOut)
def release(worker: WorkerUser, job: JobDep, body: WorkerReport, session: SessionDep):
    return service.release(session, job=job, attempt=body.attempt, holder_id=worker.id)
