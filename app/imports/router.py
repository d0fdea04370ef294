"""JSON API: importing existing preference data into a project."""

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool

from app.dependencies import AdminUser, SessionDep, SettingsDep
from app.imports import service
from app.imports.formats import ImportFormat
from app.imports.schemas import ImportResult
from app.projects.dependencies import ProjectDep
from app.uploads import multipart_file, spool_body

router = APIRouter(tags=["imports"])


@router.post(
    "/projects/{project_id}/import", status_code=status.HTTP_201_CREATED, response_model=ImportResult
)
async def import_preferences(
    _admin: AdminUser,
    project: ProjectDep,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    format: ImportFormat = Query(..., description="pairs (TRL), hh (Anthropic HH-RLHF) or rankings"),
    skip_invalid: bool = Query(
        False, description="Leave out invalid lines and list them, instead of refusing the upload"
    ),
):
    """JSONL, optionally gzip-compressed, as the raw body or a multipart `file` field. All or nothing."""
    limit = settings.max_upload_bytes
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        upload = await multipart_file(request, limit)
        spooled, filename = upload.file, upload.filename
    else:
        spooled, filename = await spool_body(request, limit), None
    return await run_in_threadpool(
        service.import_preferences,
        session,
        project=project,
        upload=spooled,
        fmt=format,
        source=service.import_source(format, filename),
        skip_invalid=skip_invalid,
    )
