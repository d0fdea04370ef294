"""The project page's upload form: streamed and size-checked like the API's upload, all or nothing like
it too; the result shows in the upload card (an htmx fragment, or the whole page without JavaScript)."""

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.dashboard.project_page import project_page_context
from app.dependencies import AdminUser, CallerDep, SessionDep, SettingsDep
from app.errors import InvalidInput, PrefLabError
from app.forms import FormRefused
from app.projects import service
from app.projects.dependencies import ProjectDep
from app.prompts import importer
from app.uploads import multipart_file
from app.web import is_htmx, render

router = APIRouter(include_in_schema=False)


@router.post("/projects/{project_id}/upload")
async def upload_prompts_form(
    request: Request,
    caller: CallerDep,
    _admin: AdminUser,
    project: ProjectDep,
    session: SessionDep,
    settings: SettingsDep,
):
    filename = ""
    try:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise _no_file()
        try:
            upload = await multipart_file(request, settings.max_upload_bytes)
        except InvalidInput as error:  # a browser sends an empty string when no file was chosen
            raise _no_file() if error.code == "missing_file" else error from None
        filename = upload.filename or ""
        if not filename and not upload.size:
            raise _no_file()
        chosen = (await request.form()).get("format")  # parsed once above; Starlette caches it
        explicit = chosen if isinstance(chosen, str) and chosen not in ("", "auto") else None
        fmt = importer.detect_format(filename=filename, content_type=upload.content_type, explicit=explicit)
        report = await run_in_threadpool(
            importer.import_prompts,
            session,
            project=project,
            upload=upload.file,
            fmt=fmt,
            source=importer.upload_source(filename, without_file="upload"),
        )
    except PrefLabError as error:
        raise _refused(request, error, project_id=project.id, filename=filename) from None
    result = {
        "ok": True,
        "filename": filename,
        "imported": report.imported,
        "completions": report.completions,
        "format": report.format,
    }
    context = project_page_context(session, project) | {"upload_result": result}
    if is_htmx(request):
        return render(
            request, "projects/_upload_result_fragment.html", caller, status_code=201, refresh=True, **context
        )
    return render(request, "projects/detail.html", caller, status_code=201, **context)


def _refused(request: Request, error: PrefLabError, *, project_id: int, filename: str) -> FormRefused:
    """Nothing of the upload is kept (the rollback); the card says why, naming the lines."""
    result: dict[str, Any] = {
        "ok": False,
        "filename": filename,
        "message": error.message,
        "errors": error.details.get("errors") or [],
        "problems": error.details.get("problems", 0),
    }

    def context(session: Session) -> dict[str, Any]:
        project = service.get_project(session, project_id)
        return project_page_context(session, project) | {"upload_result": result, "refresh": False}

    template = "projects/_upload_result_fragment.html" if is_htmx(request) else "projects/detail.html"
    return FormRefused(error, template=template, context=context)


def _no_file() -> InvalidInput:
    return InvalidInput(
        "Choose a file to upload first (.jsonl, .ndjson or .csv, optionally gzipped).",
        code="missing_file",
        details={"field": "file"},
    )
