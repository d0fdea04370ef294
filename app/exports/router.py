"""JSON API: streamed exports (researchers and admins)."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from app.auth.models import Role, User
from app.dependencies import SessionDep, require_roles
from app.exports import service
from app.exports.parquet import iter_parquet
from app.exports.schemas import SCHEMA_VERSION, ExportFilters
from app.projects.dependencies import ProjectDep

router = APIRouter(tags=["export"])
# Workers read the data they train on through this endpoint (API.md, "Worker protocol").
ExportReader = Annotated[User, Depends(require_roles(Role.admin, Role.researcher, Role.worker))]

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/projects/{project_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {}}}},
)
def export(
    _reader: ExportReader,
    project: ProjectDep,
    session: SessionDep,
    request: Request,
    filters: Annotated[ExportFilters, Query()],
):
    """Stream the project's pairs or rankings. The schema version is in the `X-PrefLab-Schema-Version`
    header and, for Parquet, in the file's metadata (`preflab.schema_version`)."""
    plan = service.plan_export(session, project=project, filters=filters)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    filename = f"{project.name}-{filters.kind}-{stamp}.{filters.format}"
    return StreamingResponse(
        stream_export(request.app.state.engine, plan),
        media_type=MEDIA_TYPES[filters.format],
        headers={
            "Content-Disposition": attachment(filename),
            "X-PrefLab-Schema-Version": str(SCHEMA_VERSION),
        },
    )


def attachment(filename: str) -> str:
    """A Content-Disposition header for any project name (RFC 6266): an ASCII stand-in in ``filename``
    (quotes, backslashes and control characters replaced, so nothing can end the value or the header)
    and the exact name, percent-encoded UTF-8, in ``filename*`` (RFC 8187), which browsers prefer."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def stream_export(engine, plan: service.ExportPlan) -> Iterator[bytes]:
    """The export's bytes, read in a transaction of its own (the request's session is closed by now)."""
    with engine.connect() as connection:
        if plan.filters.format == "jsonl":
            yield from service.iter_jsonl(connection, plan)
        else:
            yield from iter_parquet(service.iter_rows(connection, plan), plan.filters)
