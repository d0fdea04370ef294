"""The kinds of work the queue runs, each registered by the package that owns it (`app/runs/<kind>/`).

The queue itself (app.jobs.service) knows no kind: it claims, leases, records events and finishes rows.
What differs between a reward-model run and a generation job lives in the kind's package and reaches the
rest of the app through its `Kind`: the routes it adds, the charts of its run page, its card on the
project page, and what happens when a worker completes one of its jobs.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.jobs.models import Job

ChartSpec = tuple[str, Sequence[str]]
"""A run-page chart: its title and the metric keys it draws, one line each."""


@dataclass(frozen=True)
class Kind:
    name: str
    """The jobs' `kind` column and what workers claim, e.g. "reward"."""
    title: str
    """How pages name a run of this kind, e.g. "Reward model"."""
    charts: Sequence[ChartSpec] = ()
    api: APIRouter | None = None
    """JSON routes, mounted under /api/v1."""
    pages: APIRouter | None = None
    """Browser routes."""
    on_complete: Callable[[Session, Job, str | None], Any] | None = None
    """Called in the transaction that marks a job succeeded, with the artifact the worker reported (a
    training kind registers its model version here)."""
    card: str | None = None
    """Template of the kind's card on the project page (shown to admins)."""
    card_context: Callable[[Session, Any], dict[str, Any]] | None = None
    """What the card needs besides the project page's own context: `card_context(session, project)`."""
    card_order: int = 100
    """Cards are shown in this order, lowest first."""
    run_notes: str | None = None
    """Template of what the run page says about a run of this kind besides its curves (context: job)."""


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise RuntimeError(f"job kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def registered() -> list[Kind]:
    return list(_KINDS.values())


def get(name: str) -> Kind | None:
    return _KINDS.get(name)


def known_kind(name: str) -> str:
    """Pydantic validator: a kind some package registered (422 naming the kinds otherwise)."""
    if name not in _KINDS:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}")
    return name


def cards() -> list[Kind]:
    return sorted((kind for kind in _KINDS.values() if kind.card), key=lambda kind: kind.card_order)


def charts_of(name: str) -> Sequence[ChartSpec]:
    kind = _KINDS.get(name)
    return kind.charts if kind else ()


def require_kind(job: Job, name: str) -> None:
    """A route for one kind's jobs refuses another kind's (422)."""
    if job.kind != name:
        raise InvalidInput(f"Job {job.id} is a {job.kind} job, not a {name} job.", code="wrong_job_kind")
