"""Every kind of work the job queue runs, one package each (see docs/architecture.md).

A kind's package registers a `Kind` (app.jobs.kinds) when imported: its request schema (the one source
of its defaults), its routes and form, the config it snapshots into the job, its run-page charts, its
card on the project page and what happens when its job finishes. `load_kinds` imports them all, so a new
kind is a new folder here plus its templates, and nothing else changes.
"""

import importlib
import pkgutil

from app.jobs import kinds


def load_kinds() -> list[kinds.Kind]:
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")
    return kinds.registered()
