"""The job queue: enqueue, claim atomically, renew leases, finish. No HTTP types here, and no kind of
work: what a kind adds lives in its package (app.jobs.kinds).

A worker holds a job through a lease that each progress event renews. A job whose lease ran out goes
back to the queue (its `attempts` count keeps the retries), and after `max_attempts` claims it fails.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.errors import Conflict, NotFound
from app.jobs.models import FINISHED, Job, JobEvent, JobStatus

LEASE = timedelta(minutes=5)


def enqueue(
    session: Session,
    *,
    kind: str,
    project_id: int | None,
    config: dict[str, Any],
    created_by_id: int | None,
) -> Job:
    job = Job(
        kind=kind,
        project_id=project_id,
        config=config,
        created_by_id=created_by_id,
        status=JobStatus.queued.value,
        progress=0.0,
        metrics={},
        attempts=0,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.", code="job_not_found")
    return job


def active_job(session: Session, *, project_id: int, kind: str) -> Job | None:
    return session.scalar(
        select(Job)
        .where(
            Job.project_id == project_id,
            Job.kind == kind,
            Job.status.in_([JobStatus.queued.value, JobStatus.running.value]),
        )
        .order_by(Job.id.desc())
        .limit(1)
    )


def list_jobs(session: Session, *, project_id: int, limit: int = 20) -> list[Job]:
    return list(
        session.scalars(select(Job).where(Job.project_id == project_id).order_by(Job.id.desc()).limit(limit))
    )


def requeue_expired(session: Session) -> None:
    """Give jobs whose worker went silent back to the queue, or fail them after too many attempts."""
    now = utcnow()
    expired = select(Job.id).where(Job.status == JobStatus.running.value, Job.lease_expires_at < now)
    session.execute(
        update(Job)
        .where(Job.id.in_(expired), Job.attempts >= Job.max_attempts)
        .values(
            status=JobStatus.failed.value,
            finished_at=now,
            worker=None,
            lease_expires_at=None,
            error="The worker stopped reporting and the job ran out of attempts.",
            claimed_by_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(Job.id.in_(expired))
        .values(status=JobStatus.queued.value, worker=None, claimed_by_id=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )


def claim(session: Session, *, kinds: list[str], worker: str, holder_id: int) -> Job | None:
    """Hand the oldest queued job of these kinds to the worker account `holder_id` (`worker`: its name
    for logs); two workers never get the same job."""
    requeue_expired(session)
    for _ in range(5):  # another worker may win the race for a candidate; try the next one
        job_id = _next_queued_id(session, kinds)
        if job_id is None:
            return None
        now = utcnow()
        # The status condition makes the update a compare-and-set: it changes one row or none.
        won = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued.value)
            .values(
                status=JobStatus.running.value,
                worker=worker,
                claimed_by_id=holder_id,
                lease_expires_at=now + LEASE,
                started_at=now,
                attempts=Job.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount
        if won:
            job = session.get(Job, job_id)
            session.refresh(job)
            return job
    return None


def _next_queued_id(session: Session, kinds: list[str]) -> int | None:
    query = (
        select(Job.id)
        .where(Job.status == JobStatus.queued.value, Job.kind.in_(kinds))
        .order_by(Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Postgres: skip rows another worker is claiming instead of queueing behind its lock.
        query = query.with_for_update(skip_locked=True)
    return session.scalar(query)


def _held_by_worker(job: Job, attempt: int, holder_id: int) -> None:
    """Refuse reports from a worker that does not hold the job's current claim.

    `holder_id` is the reporting worker account: another worker's token cannot finish, fail or feed a
    job it never claimed. `attempt` is the fencing token the claim returned: after a lost lease the job
    is claimed again with a higher attempt number, and the old worker's late reports are turned away.
    """
    if job.claimed_by_id != holder_id and attempt < job.attempts:
        raise Conflict(
            "This worker's lease on the job ran out and another worker holds it now.", code="lease_lost"
        )
    if job.claimed_by_id != holder_id:
        raise Conflict(
            f"Job {job.id} is not held by this worker: only the worker that claimed it may report on it.",
            code="job_not_held",
        )
    if job.status == JobStatus.cancelled.value:
        raise Conflict("The job was cancelled; stop working on it.", code="job_cancelled")
    if job.status != JobStatus.running.value:
        raise Conflict(
            f"The job is {job.status}, not running; it was re-queued or finished elsewhere.",
            code="job_not_running",
        )
    if attempt != job.attempts:
        raise Conflict(
            "This worker's lease on the job ran out and another worker holds it now.", code="lease_lost"
        )


def record_event(
    session: Session,
    *,
    job: Job,
    progress: float | None,
    metrics: dict[str, Any],
    log: str | None,
    attempt: int,
    holder_id: int,
) -> None:
    """Store a progress event and renew the lease."""
    _held_by_worker(job, attempt, holder_id)
    session.add(JobEvent(job_id=job.id, progress=progress, metrics=metrics, log=log))
    if progress is not None:
        job.progress = progress
    if figures := _figures(metrics):
        job.metrics = {**job.metrics, **figures}
    job.lease_expires_at = utcnow() + LEASE
    session.flush()


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The job keeps the latest value of each scalar metric; structured reports (a PPO run's sample
    completions, lists or objects) stay on their event, so they never pile up in the job or its model."""
    return {key: value for key, value in metrics.items() if not isinstance(value, list | dict)}


def renew_lease(session: Session, *, job: Job, attempt: int, holder_id: int) -> None:
    _held_by_worker(job, attempt, holder_id)
    job.lease_expires_at = utcnow() + LEASE
    session.flush()


def complete(
    session: Session,
    *,
    job: Job,
    artifact: str | None,
    metrics: dict[str, Any],
    attempt: int,
    holder_id: int,
) -> Job:
    _held_by_worker(job, attempt, holder_id)
    job.status = JobStatus.succeeded.value
    job.progress = 1.0
    job.artifact = artifact
    job.metrics = {**job.metrics, **_figures(metrics)}
    job.finished_at = utcnow()
    job.lease_expires_at = None
    session.flush()
    return job


def fail(session: Session, *, job: Job, error: str, attempt: int, holder_id: int) -> Job:
    _held_by_worker(job, attempt, holder_id)
    job.status = JobStatus.failed.value
    job.error = error
    job.finished_at = utcnow()
    job.lease_expires_at = None
    session.flush()
    return job


def release(session: Session, *, job: Job, attempt: int, holder_id: int) -> Job:
    """A worker shutting down hands its job back without spending an attempt."""
    _held_by_worker(job, attempt, holder_id)
    job.status = JobStatus.queued.value
    job.worker = None
    job.claimed_by_id = None
    job.lease_expires_at = None
    job.attempts = max(0, job.attempts - 1)
    session.flush()
    return job


def release_all_held_by(session: Session, *, holder_id: int) -> list[int]:
    """Hand back every running job this worker account holds, without spending an attempt: for a worker
    known to be gone (`serve --with-worker` starting a new local worker), so its jobs resume at once
    instead of after their lease."""
    held = list(
        session.scalars(
            select(Job).where(Job.claimed_by_id == holder_id, Job.status == JobStatus.running.value)
        )
    )
    for job in held:
        release(session, job=job, attempt=job.attempts, holder_id=holder_id)
    return [job.id for job in held]


def cancel(session: Session, *, job: Job) -> Job:
    if job.status in FINISHED:
        raise Conflict(f"The job already {job.status}; there is nothing to cancel.", code="job_finished")
    job.status = JobStatus.cancelled.value
    job.finished_at = utcnow()
    job.lease_expires_at = None
    session.flush()
    return job


def retry(session: Session, *, job: Job) -> Job:
    if job.status not in (JobStatus.failed.value, JobStatus.cancelled.value):
        raise Conflict("Only a failed or cancelled job can be retried.", code="job_not_retryable")
    job.status = JobStatus.queued.value
    job.error = None
    job.attempts = 0
    job.progress = 0.0
    job.metrics = {}
    job.started_at = None
    job.finished_at = None
    job.worker = None
    job.claimed_by_id = None
    session.flush()
    return job


def events(session: Session, *, job: Job) -> list[JobEvent]:
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))
