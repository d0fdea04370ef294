"""Handing out tasks (who gets which prompt, under the overlap, skip and expiry rules), the task as the
labeler sees it, and their progress. What they send back is app.labeling.answers. No HTTP types here."""

import random
from datetime import UTC, datetime, timedelta
from enum import Enum

from sqlalchemy import ColumnElement, ScalarSelect, Select, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.models import User
from app.db import utcnow
from app.labeling.models import (
    Assignment,
    AssignmentStatus,
    Demonstration,
    DemonstrationSource,
    Ranking,
)
from app.labeling.schemas import LabelerProgress
from app.projects import members
from app.projects import service as project_service
from app.projects.models import InstructionVersion, Project
from app.prompts.models import Completion, Prompt

CANDIDATES_PER_TRY = 8
_shuffler = random.SystemRandom()

LIVE = AssignmentStatus.live.value
# A labeler's own live, ranked or skipped assignment keeps that prompt from them; an expired one does not.
KEEPS_PROMPT_FROM_LABELER = (LIVE, AssignmentStatus.submitted.value, AssignmentStatus.skipped.value)


def expire_stale(session: Session) -> None:
    """Live assignments past their time return their slot to the pool."""
    session.execute(
        update(Assignment)
        .where(Assignment.status == LIVE, Assignment.expires_at <= utcnow())
        .values(status=AssignmentStatus.expired.value, slot=None)
        .execution_options(synchronize_session=False)
    )


def scope_for(session: Session, *, labeler: User, project_id: int | None) -> Project | None:
    """The project a labeler asked for by id (None: every project open to them); 404 for one that does
    not exist or whose team they are not on (app/projects/members.py)."""
    if project_id is None:
        return None
    project = project_service.get_project(session, project_id)
    members.require_open_to(session, project=project, labeler=labeler)
    return project


def next_task(
    session: Session, *, labeler: User, project: Project | None, ttl: timedelta
) -> Assignment | None:
    """The labeler's live assignment if they have one, else a new one, else None: no slot is free for
    this labeler (never said while one is)."""
    expire_stale(session)
    current = session.scalar(
        select(Assignment)
        .where(
            Assignment.labeler_id == labeler.id,
            Assignment.status == LIVE,
            *([Assignment.project_id == project.id] if project else []),
        )
        .order_by(Assignment.id)
        .limit(1)
    )
    if current is not None:
        return current
    if (gold := _gold_task(session, labeler=labeler, project=project, ttl=ttl)) is not None:
        return gold
    # Concurrent labelers race for the same slots. Each prompt is taken on its own: locked, its slots
    # counted afresh, one taken (see _try_assign). Prompts another request holds are tried first without
    # waiting, so concurrent requests spread out, then waiting, so a busy prompt is never mistaken for a
    # full one; and candidates are looked up again until none is left that this request has not found
    # full. A request holds at most one prompt lock at a time, so two can never wait on each other.
    full: set[int] = set()
    while candidates := _candidate_prompts(
        session, labeler=labeler, project=project, exclude=full, limit=CANDIDATES_PER_TRY
    ):
        busy = []
        for prompt, prompt_project in candidates:
            outcome = _try_assign(session, prompt=prompt, project=prompt_project, labeler=labeler, ttl=ttl)
            if isinstance(outcome, Assignment):
                return outcome
            if outcome is BUSY:
                busy.append((prompt, prompt_project))
            else:
                full.add(prompt.id)
        for prompt, prompt_project in busy:
            outcome = _try_assign(
                session, prompt=prompt, project=prompt_project, labeler=labeler, ttl=ttl, wait=True
            )
            if isinstance(outcome, Assignment):
                return outcome
            full.add(prompt.id)
    return None


def _completions_of(prompt_id_column: ColumnElement[int]) -> ScalarSelect[int]:
    return select(func.count(Completion.id)).where(Completion.prompt_id == prompt_id_column).scalar_subquery()


def _slots_taken(prompt_id_column: ColumnElement[int]) -> ScalarSelect[int]:
    return (
        select(func.count(Assignment.id))
        .where(Assignment.prompt_id == prompt_id_column, Assignment.slot.is_not(None))
        .scalar_subquery()
    )


def _candidate_prompts(
    session: Session, *, labeler: User, project: Project | None, exclude: set[int], limit: int
) -> list[tuple[Prompt, Project]]:
    """Prompts with a free slot this labeler may take, as of this statement (a concurrent request may
    take the slot before _try_assign gets there, which is why it counts again under the lock)."""
    query = (
        _open_to(select(Prompt, Project), labeler=labeler, project=project).order_by(Prompt.id).limit(limit)
    )
    if exclude:
        query = query.where(Prompt.id.not_in(exclude))
    return [(row[0], row[1]) for row in session.execute(query)]


class _Outcome(Enum):
    FULL = "full"  # no free slot (or the labeler got this prompt meanwhile)
    BUSY = "busy"  # another request holds the prompt; try again, waiting


FULL, BUSY = _Outcome.FULL, _Outcome.BUSY


def _try_assign(
    session: Session, *, prompt: Prompt, project: Project, labeler: User, ttl: timedelta, wait: bool = False
) -> Assignment | _Outcome:
    """Take a free slot of one prompt, in a savepoint that holds the prompt's lock.

    On Postgres the prompt row is locked (FOR NO KEY UPDATE, which does not block the foreign-key checks
    of concurrent inserts) before its slots are counted; under READ COMMITTED the count then sees every
    slot taken by requests that held the lock before. A full prompt rolls the savepoint back, which
    releases the lock at once. SQLite runs one writing transaction at a time (app.db): no lock needed.
    """
    savepoint = session.begin_nested()
    try:
        outcome = _assign_locked(session, prompt=prompt, project=project, labeler=labeler, ttl=ttl, wait=wait)
    except IntegrityError:  # this labeler got the prompt meanwhile (in another tab)
        outcome = FULL
    if isinstance(outcome, Assignment):
        savepoint.commit()
    else:
        savepoint.rollback()
    return outcome


def _assign_locked(
    session: Session, *, prompt: Prompt, project: Project, labeler: User, ttl: timedelta, wait: bool
) -> Assignment | _Outcome:
    if session.get_bind().dialect.name == "postgresql":
        locked = session.scalar(
            select(Prompt.id)
            .where(Prompt.id == prompt.id)
            .with_for_update(skip_locked=not wait, key_share=True)
        )
        if locked is None:
            return BUSY
    if prompt.gold_tiers is not None:
        free: list[int | None] = [None]  # a gold task takes no slot: every labeler may have it once
    else:
        taken = set(
            session.scalars(
                select(Assignment.slot).where(Assignment.prompt_id == prompt.id, Assignment.slot.is_not(None))
            )
        )
        free = [slot for slot in range(project.rankings_per_prompt) if slot not in taken]
    if not free:
        return FULL
    completion_ids = list(
        session.scalars(
            select(Completion.id)
            .where(Completion.prompt_id == prompt.id)
            .order_by(Completion.id)
            .limit(project.completions_per_prompt)
        )
    )
    order = _shuffler.sample(completion_ids, len(completion_ids))
    instructions = session.scalar(
        select(InstructionVersion.id)
        .where(InstructionVersion.project_id == project.id)
        .order_by(InstructionVersion.version.desc())
        .limit(1)
    )
    now = utcnow()
    values = dict(
        slot=free[0],
        status=LIVE,
        shown_order=order,
        instructions_version_id=instructions,
        created_at=now,
        expires_at=now + ttl,
        finished_at=None,
    )
    earlier = session.scalar(
        select(Assignment).where(Assignment.prompt_id == prompt.id, Assignment.labeler_id == labeler.id)
    )
    if earlier is not None:  # this labeler's own expired assignment of the prompt comes back
        for key, value in values.items():
            setattr(earlier, key, value)
        assignment = earlier
    else:
        assignment = Assignment(project_id=project.id, prompt_id=prompt.id, labeler_id=labeler.id, **values)
        session.add(assignment)
    session.flush()
    return assignment


def labeler_progress(session: Session, *, labeler: User, project: Project | None) -> LabelerProgress:
    """Tasks done: rankings, and the answers of `demonstrate` tasks (a rewrite rides on its ranking)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    ranked_total = ranked_today = 0
    for table, extra in (
        (Ranking, []),
        (Demonstration, [Demonstration.source == DemonstrationSource.demonstrate.value]),
    ):
        in_project = [table.project_id == project.id] if project else []
        mine = select(func.count(table.id)).where(table.labeler_id == labeler.id, *in_project, *extra)
        ranked_total += session.scalar(mine) or 0
        ranked_today += session.scalar(mine.where(table.created_at >= midnight)) or 0
    left = _count_available(session, labeler=labeler, project=project)
    return LabelerProgress(ranked_today=ranked_today, ranked_total=ranked_total, left_in_project=left)


def _count_available(session: Session, *, labeler: User, project: Project | None) -> int:
    return session.scalar(_open_to(select(func.count(Prompt.id)), labeler=labeler, project=project)) or 0


def _open_to(query: Select, *, labeler: User, project: Project | None) -> Select:
    """The prompts with a free slot that this labeler may take (in `project`, or in any project)."""
    mine = exists().where(
        Assignment.prompt_id == Prompt.id,
        Assignment.labeler_id == labeler.id,
        Assignment.status.in_(KEEPS_PROMPT_FROM_LABELER),
    )
    query = query.join(Project, Project.id == Prompt.project_id).where(
        Prompt.for_labeling(),
        # a ranking needs all K completions; a demonstration starts from whatever there is
        or_(Project.task == "demonstrate", _completions_of(Prompt.id) >= Project.completions_per_prompt),
        _slots_taken(Prompt.id) < Project.rankings_per_prompt,
        ~mine,
        members.open_to(labeler.id, Project.id),
        Prompt.gold_tiers.is_(None),  # gold tasks come through _gold_task, at the project's gold_rate
    )
    return query.where(Prompt.project_id == project.id) if project is not None else query


def _gold_task(
    session: Session, *, labeler: User, project: Project | None, ttl: timedelta
) -> Assignment | None:
    """A gold task, at the project's gold_rate: the first gold prompt this labeler has not had, handed
    out like any other (no slot: every labeler may have it once), or None when the draw says not now."""
    if project is not None and project.gold_rate <= 0:
        return None  # the common case costs the hand-out no query
    mine = exists().where(Assignment.prompt_id == Prompt.id, Assignment.labeler_id == labeler.id)
    query = (
        select(Prompt, Project)
        .join(Project, Project.id == Prompt.project_id)
        .where(
            Prompt.gold_tiers.is_not(None),
            Project.gold_rate > 0,
            Project.task == "rank",
            _completions_of(Prompt.id) >= Project.completions_per_prompt,
            ~mine,
            members.open_to(labeler.id, Project.id),
        )
        .order_by(Prompt.id)
        .limit(1)
    )
    if project is not None:
        query = query.where(Prompt.project_id == project.id)
    found = session.execute(query).first()
    if found is None or _shuffler.random() >= found[1].gold_rate:
        return None
    # Gold is mixed into ordinary work, never all that is left: a labeler who has ranked everything else
    # is told so, rather than handed only gold tasks (which would tell them which ones are gold).
    if _count_available(session, labeler=labeler, project=found[1]) == 0:
        return None
    outcome = _try_assign(session, prompt=found[0], project=found[1], labeler=labeler, ttl=ttl, wait=True)
    return outcome if isinstance(outcome, Assignment) else None


def task_view(session: Session, assignment: Assignment) -> dict:
    """The task as the labeler sees it: completions in the stored shuffled order, no model names."""
    prompt = session.get(Prompt, assignment.prompt_id)
    texts = dict(
        session.execute(
            select(Completion.id, Completion.text).where(Completion.id.in_(assignment.shown_order))
        ).all()
    )
    instructions = session.get(InstructionVersion, assignment.instructions_version_id)
    return {
        "assignment_id": assignment.id,
        "project_id": assignment.project_id,
        "task": session.scalar(select(Project.task).where(Project.id == assignment.project_id)),
        "instructions_md": instructions.body_md,
        "instructions_version": instructions.version,
        "prompt": {"id": prompt.id, "messages": prompt.messages},
        "completions": [{"id": cid, "text": texts[cid]} for cid in assignment.shown_order],
        "expires_at": assignment.expires_at,
    }


def live_assignments_by_project(session: Session, *, labeler: User) -> dict[int, int]:
    """How many tasks the labeler has begun and not finished, by project id."""
    rows = session.execute(
        select(Assignment.project_id, func.count(Assignment.id))
        .where(Assignment.labeler_id == labeler.id, Assignment.status == AssignmentStatus.live.value)
        .group_by(Assignment.project_id)
    )
    return {project_id: count for project_id, count in rows}
