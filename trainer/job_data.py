"""The data a training job learns from: one export of its project, downloaded through the API (the worker
reads data only as a researcher would), once. It is kept beside the job's checkpoints, so a job
re-claimed after its worker died resumes on the very data it started with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.client import ClaimedJob


def download_once(ctx: Any, job: ClaimedJob, kind: str, out_dir: Path) -> Path:
    """The job's `kind` export (pairs, demonstrations) with its config's `filters`, at
    ``out_dir/data/<kind>.jsonl``; a progress event says how it was got."""
    path = out_dir / "data" / f"{kind}.jsonl"
    if path.exists():
        log_text = "resuming with the data downloaded by the first attempt"
    else:
        params = {"kind": kind, "format": "jsonl", **export_params(job.config.get("filters", {}))}
        rows = ctx.api.download_export(job.project_id, params, path)
        log_text = f"downloaded {rows} {kind}"
    ctx.api.event(job, progress=0.01, log_text=log_text)
    return path


def export_params(filters: dict[str, Any]) -> dict[str, str]:
    """A run's `filters` as the export's query parameters (lists comma-separated, empty ones left out)."""
    params = {}
    for key, value in filters.items():
        if value in (None, [], ""):
            continue
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        else:
            params[key] = ",".join(value) if isinstance(value, list) else str(value)
    return params
