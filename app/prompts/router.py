"""JSON API: prompt uploads and listing."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.concurrency import run_in_threadpool

from app.auth.models import Role, User
from app.dependencies import AdminUser, SessionDep, SettingsDep, require_roles
from app.pagination import Page
from app.projects.dependencies import ProjectDep
from app.prompts import importer, service
from app.prompts.schemas import ImportReport, PromptOut, PromptStatus
from app.uploads import multipart_file, spool_body

router = APIRouter(tags=["prompts"])
# Workers read the prompts a generate job must fill.
PromptReader = Annotated[User, Depends(require_roles(Role.admin, Role.worker))]


@router.post(
    "/projects/{project_id}/prompts", status_code=status.HTTP_201_CREATED, response_model=ImportReport
)
async def upload_prompts(
    _admin: AdminUser,
    project: ProjectDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    format: str | None = Query(None, description="jsonl or csv; otherwise from Content-Type or file name"),
):
    """JSONL (`application/x-ndjson`) or CSV (`text/csv`) as the raw body, or a multipart `file` field."""
    limit = settings.max_upload_bytes
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        upload = await multipart_file(request, limit)
        spooled, filename, file_type = upload.file, upload.filename, upload.content_type
    else:
        spooled, filename, file_type = await spool_body(request, limit), None, content_type
    fmt = importer.detect_format(filename=filename, content_type=file_type, explicit=format)
    source = importer.upload_source(filename, without_file="api")
    return await run_in_threadpool(
        importer.import_prompts, session, project=project, upload=spooled, fmt=fmt, source=source
    )


@router.get("/projects/{project_id}/prompts", response_model=Page[PromptOut])
def list_prompts(
    _reader: PromptReader,
    project: ProjectDep,
    session: SessionDep,
    status: PromptStatus | None = None,
    limit: int = 100,
    cursor: str | None = None,
):
    prompts, next_cursor = service.list_prompts(
        session, project=project, status=status, limit=limit, cursor=cursor
    )
    rankings = service.ranking_counts(session, [p.id for p in prompts])
    items = [service.prompt_out(p, project, rankings.get(p.id, 0)) for p in prompts]
    return Page(items=items, next_cursor=next_cursor)
