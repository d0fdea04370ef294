"""Resumable checkpoints shared by every training run: accelerate's state (model, optimizer, scheduler,
RNG) plus the run's own state and config in ``trainer_state.json``.

A checkpoint is written next to the old one and swapped in, so a crash mid-save keeps the previous one;
it is loaded only when it belongs to this run (the same config, up to the fields a resumed run may
change, and whatever else the caller requires to match, such as the data).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from accelerate import Accelerator

log = logging.getLogger("preflab.checkpoint")

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.json"


def save_checkpoint(
    accelerator: Accelerator, directory: Path, state: dict[str, Any], *, safe_serialization: bool = True
) -> None:
    """``state``: JSON-serialisable, with the run's ``config`` (and whatever resuming needs)."""
    staging = directory.with_name(directory.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=safe_serialization)
    if accelerator.is_main_process:
        (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    accelerator.wait_for_everyone()


def load_checkpoint(
    accelerator: Accelerator,
    directory: Path,
    config: dict[str, Any],
    *,
    ignored: Iterable[str] = (),
    must_match: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Load the checkpoint into the prepared objects and return its saved state, or None (nothing there,
    or it belongs to another config, or a ``must_match`` entry differs: start afresh)."""
    state_file = directory / TRAINER_STATE
    if not state_file.is_file():
        return None
    saved = json.loads(state_file.read_text())
    ignored = set(ignored)
    ours = {k: v for k, v in config.items() if k not in ignored}
    theirs = {k: v for k, v in saved["config"].items() if k not in ignored}
    if ours != theirs or any(saved.get(key) != value for key, value in (must_match or {}).items()):
        log.warning("checkpoint in %s is for another config or data set; starting afresh", directory)
        return None
    accelerator.load_state(str(directory))
    return saved
