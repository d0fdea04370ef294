"""Labeler quality in a project: each labeler's figures, and a status computed by the project's rules
that an admin can override.

The figures: rankings (ordinary tasks), median seconds, the share of all their rankings submitted faster
than the project's `min_seconds`, gold rankings and their mean agreement with the gold tiers (Kendall
tau-b: 1 the same order, 0 unrelated, -1 reversed), and the leave-one-out agreement with the other
labelers (app/agreement/service.py). The rules, in order:

- `flagged` when more than `max_fast_share` of their rankings (at least 3) came faster than `min_seconds`;
- `flagged` when, after `gold_min_tasks` gold rankings, their mean gold agreement is below
  `gold_min_agreement`;
- `ok` otherwise (and until there is enough to judge).

An admin's status (`ok`, `flagged` or `excluded`, `PATCH /projects/{id}/labelers/{user_id}`) replaces the
computed one until removed (`"status": null`). Exports and training leave out the rankings of labelers
whose status is in `exclude_labeler_status` (app/exports/service.py).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from statistics import fmean, median

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.agreement import metrics
from app.agreement.models import LABELER_STATUSES, LabelerStatus
from app.agreement.service import project_agreement
from app.auth.models import Role, User
from app.errors import InvalidInput
from app.labeling.models import Ranking
from app.projects.models import Project
from app.projects.pseudonyms import labeler_pseudonym
from app.prompts.models import Prompt

MIN_TIMED = 3
"""Rankings with a time before the too-fast rule may flag anyone."""


@dataclass
class LabelerQuality:
    user_id: int
    username: str
    pseudonym: str
    rankings: int = 0
    median_seconds: float | None = None
    fast_share: float | None = None
    gold_rankings: int = 0
    gold_agreement: float | None = None
    agreement: float | None = None
    computed_status: str = "ok"
    status: str = "ok"
    status_set_by_admin: bool = False
    reasons: list[str] = field(default_factory=list)


def project_labelers(session: Session, *, project: Project) -> list[LabelerQuality]:
    """Every labeler who ranked in the project, flagged ones first."""
    rows = session.execute(
        select(Ranking.labeler_id, Ranking.tiers, Ranking.seconds_spent, Ranking.gold, Prompt.gold_tiers)
        .join(Prompt, Prompt.id == Ranking.prompt_id)
        .where(Ranking.project_id == project.id, Ranking.labeler_id.is_not(None))
    ).all()
    seconds: dict[int, list[float]] = defaultdict(list)
    gold_taus: dict[int, list[float]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    golds: dict[int, int] = defaultdict(int)
    for labeler_id, tiers, spent, gold, gold_tiers in rows:
        if spent is not None:
            seconds[labeler_id].append(spent)
        if gold and gold_tiers:
            golds[labeler_id] += 1
            tau = metrics.kendall_tau_b(tiers, gold_tiers)
            if tau is not None:
                gold_taus[labeler_id].append(tau)
        else:
            counts[labeler_id] += 1
    ids = sorted(set(counts) | set(golds))
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())
    agreement = {
        row.labeler_id: row.agreement for row in project_agreement(session, project=project).labelers
    }
    overrides = dict(
        session.execute(
            select(LabelerStatus.user_id, LabelerStatus.status).where(LabelerStatus.project_id == project.id)
        ).all()
    )
    labelers = []
    for user_id in ids:
        times = seconds.get(user_id, [])
        quality = LabelerQuality(
            user_id=user_id,
            username=names.get(user_id, f"user {user_id}"),
            pseudonym=labeler_pseudonym(project.export_salt, user_id),
            rankings=counts.get(user_id, 0),
            median_seconds=median(times) if times else None,
            fast_share=sum(t < project.min_seconds for t in times) / len(times) if times else None,
            gold_rankings=golds.get(user_id, 0),
            gold_agreement=fmean(gold_taus[user_id]) if gold_taus.get(user_id) else None,
            agreement=agreement.get(user_id),
        )
        quality.reasons = _reasons(project, quality, timed=len(times))
        quality.computed_status = "flagged" if quality.reasons else "ok"
        quality.status = overrides.get(user_id, quality.computed_status)
        quality.status_set_by_admin = user_id in overrides
        labelers.append(quality)
    return sorted(labelers, key=lambda q: (q.status == "ok", q.username))


def _reasons(project: Project, q: LabelerQuality, *, timed: int) -> list[str]:
    reasons = []
    if q.fast_share is not None and timed >= MIN_TIMED and q.fast_share > project.max_fast_share:
        reasons.append(
            f"{q.fast_share:.0%} of rankings faster than {project.min_seconds:g} s "
            f"(more than {project.max_fast_share:.0%})"
        )
    if (
        q.gold_agreement is not None
        and q.gold_rankings >= project.gold_min_tasks
        and q.gold_agreement < project.gold_min_agreement
    ):
        reasons.append(
            f"gold agreement {q.gold_agreement:+.2f} over {q.gold_rankings} gold tasks "
            f"(below {project.gold_min_agreement:+.2f})"
        )
    return reasons


def set_status(session: Session, *, project: Project, user_id: int, status: str | None) -> None:
    """An admin's status for a labeler of the project; None: back to the computed one."""
    user = session.get(User, user_id)
    if user is None or user.role != Role.labeler.value:
        raise InvalidInput(
            f"User {user_id} is not a labeler.", code="not_a_labeler", details={"field": "user_id"}
        )
    if status is not None and status not in LABELER_STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(LABELER_STATUSES)} (or null).", details={"field": "status"}
        )
    session.execute(
        delete(LabelerStatus).where(LabelerStatus.project_id == project.id, LabelerStatus.user_id == user_id)
    )
    if status is not None:
        session.add(LabelerStatus(project_id=project.id, user_id=user_id, status=status))
    session.flush()


def labeler_ids_with_status(session: Session, *, project: Project, statuses: set[str]) -> set[int]:
    """The labelers whose status (an admin's, else the rules') is one of `statuses`."""
    if not statuses:
        return set()
    return {q.user_id for q in project_labelers(session, project=project) if q.status in statuses}
