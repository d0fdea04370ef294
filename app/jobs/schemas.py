from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from app.jobs.kinds import known_kind
from app.jobs.models import JobStatus

KindName = Annotated[
    str, AfterValidator(known_kind), Field(description="A job kind, e.g. generate, reward, ppo")
]
Attempt = Annotated[
    int,
    Field(
        ge=1,
        le=2**31 - 1,
        description="The claim's `attempts` (required): only the worker holding the job's current claim may "
        "report, and reports from a lost lease or from another worker get 409",
    ),
]


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: JobStatus
    project_id: int | None
    progress: float
    metrics: dict[str, Any]
    error: str | None
    model_id: int | None
    config: dict[str, Any]
    attempts: int
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobCreated(BaseModel):
    job_id: int


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[KindName] = Field(min_length=1)
    worker: str = Field(min_length=1, max_length=200, description="A name for logs, e.g. the host")


class ClaimedJob(BaseModel):
    id: int
    kind: str
    project_id: int | None
    config: dict[str, Any]
    attempts: int
    lease_expires_at: datetime


class WorkerReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: Attempt


class JobEventIn(WorkerReport):
    progress: float | None = Field(None, ge=0, le=1)
    metrics: dict[str, Any] = Field(default_factory=dict)
    log: str | None = Field(None, max_length=100_000)


class JobEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    progress: float | None
    metrics: dict[str, Any]
    log: str | None
    created_at: datetime


class JobComplete(WorkerReport):
    artifact: str | None = Field(None, max_length=1000)
    metrics: dict[str, Any] = Field(default_factory=dict)


class JobFail(WorkerReport):
    error: str = Field(min_length=1, max_length=100_000)
