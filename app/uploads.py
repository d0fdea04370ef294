"""Receiving an upload's body within its size limit: the raw body spooled to a temporary file, or the
`file` field of a multipart form; 413 as soon as it passes the limit. Shared by the prompt upload, the
preference-data import and the project page's upload form."""

import tempfile
from typing import IO

from fastapi import Request
from starlette.datastructures import UploadFile

from app.errors import InvalidInput, PayloadTooLarge

SPOOL_IN_MEMORY_BYTES = 1024 * 1024  # beyond this an upload is spooled to disk


async def spool_body(request: Request, limit: int) -> IO[bytes]:
    """Copy the request body to a temporary file, refusing it (413) as soon as it passes `limit` bytes."""
    _refuse_declared_size(request, limit)
    spooled = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 - returned open
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            spooled.close()
            raise too_large(limit)
        spooled.write(chunk)
    spooled.seek(0)
    return spooled


async def multipart_file(request: Request, limit: int) -> UploadFile:
    _refuse_declared_size(request, limit)
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InvalidInput(
            "The multipart form needs a file field named 'file'.",
            code="missing_file",
            details={"field": "file"},
        )
    if upload.size is not None and upload.size > limit:
        raise too_large(limit)
    await upload.seek(0)
    return upload


def _refuse_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the {limit / 1024 / 1024:g} MB limit (PREFLAB_MAX_UPLOAD_MB); "
        "split it into several files.",
        details={"limit_bytes": limit},
    )
