"""Large imports stream: memory holds a batch and bounded caches, never the file."""

import io
import json
import tracemalloc

from app.imports import service
from app.imports.formats import ImportFormat
from app.projects import service as project_service
from app.projects.schemas import ProjectCreate


def pairs_file(n: int, offset: int) -> io.BytesIO:
    rows = (
        {
            "prompt": f"question {offset + i} " + "q" * 200,
            "chosen": f"good {i} " + "c" * 300,
            "rejected": "bad " * 80,
        }
        for i in range(n)
    )
    return io.BytesIO("".join(json.dumps(row) + "\n" for row in rows).encode())


def peak_bytes(session, project, upload: io.BytesIO) -> int:
    tracemalloc.start()
    try:
        result = service.import_preferences(
            session, project=project, upload=upload, fmt=ImportFormat.pairs, source="import:pairs:memory"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.imported == len(upload.getvalue().splitlines())
    return peak


def test_memory_does_not_grow_with_the_file(session_factory, monkeypatch) -> None:
    monkeypatch.setattr(service, "BATCH_SIZE", 100)
    monkeypatch.setattr(service, "MAX_CACHED", 150)
    small, large = pairs_file(600, 0), pairs_file(3000, 10_000)  # the files themselves are not traced
    with session_factory() as session:
        project = project_service.create_project(session, data=ProjectCreate(name="memory"), author=None)
        small_peak = peak_bytes(session, project, small)
        large_peak = peak_bytes(session, project, large)
        session.commit()
    assert large_peak < small_peak * 1.5 + 256 * 1024, (small_peak, large_peak)
