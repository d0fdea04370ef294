"""Agreement and consensus of a project's rankings: the database side of `app.agreement.metrics`.

A project's rankings are read in one query (the columns the maths needs, in prompt order) and grouped in
Python; everything else is pure functions over those groups. Imported rankings (no labeler, a `source`)
count as rankings of their prompt, for its agreement and consensus and as "others" of the labelers who
ranked it too, but have no row of their own in the labeler table.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import fmean, median

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.agreement import metrics
from app.agreement.schemas import (
    AgreementProgress,
    HistogramBin,
    LabelerAgreement,
    ProjectAgreement,
    PromptAgreement,
)
from app.auth.models import User
from app.labeling.models import Ranking
from app.projects.models import Project
from app.prompts.models import Prompt


@dataclass(frozen=True)
class RankingRow:
    """The columns of one ranking that agreement needs."""

    id: int
    prompt_id: int
    labeler_id: int | None
    tiers: list[list[int]]
    seconds_spent: float | None


def load_rankings(session: Session, *, project_id: int) -> dict[int, list[RankingRow]]:
    """The project's rankings grouped by prompt id, in one query.

    If a labeler somehow has two rankings of one prompt (the assignment rules forbid it), only the later
    one counts, so nobody is ever compared with themselves.
    """
    rows = session.execute(
        select(Ranking.id, Ranking.prompt_id, Ranking.labeler_id, Ranking.tiers, Ranking.seconds_spent)
        .where(Ranking.project_id == project_id, Ranking.gold.is_(False))  # gold: scored on its own
        .order_by(Ranking.prompt_id, Ranking.id)
    )
    by_prompt: dict[int, list[RankingRow]] = defaultdict(list)
    for ranking_id, prompt_id, labeler_id, tiers, seconds in rows:
        group = by_prompt[prompt_id]
        if labeler_id is not None:
            group[:] = [r for r in group if r.labeler_id != labeler_id]
        group.append(RankingRow(ranking_id, prompt_id, labeler_id, tiers, seconds))
    return dict(by_prompt)


def agreement_by_prompt(session: Session, *, project_id: int) -> dict[int, float]:
    """prompt_id -> mean pairwise Kendall tau-b of its rankings, for the prompts where it is defined
    (two rankings or more, and at least one pair that is not all ties)."""
    result = {}
    for prompt_id, group in load_rankings(session, project_id=project_id).items():
        value = metrics.prompt_agreement([r.tiers for r in group]) if len(group) > 1 else None
        if value is not None:
            result[prompt_id] = value
    return result


@dataclass
class _LabelerTally:
    rankings: int = 0
    seconds: list[float] = field(default_factory=list)
    shared: int = 0
    taus: list[float] = field(default_factory=list)


def project_agreement(session: Session, *, project: Project) -> ProjectAgreement:
    """Per prompt: rankings, agreement, Bradley-Terry consensus; per labeler: rankings, median time,
    leave-one-out agreement with the others and its distribution; and the project's progress."""
    by_prompt = load_rankings(session, project_id=project.id)
    prompts: list[PromptAgreement] = []
    tallies: dict[int, _LabelerTally] = defaultdict(_LabelerTally)

    for prompt_id, group in sorted(by_prompt.items()):
        # Each ranking is one rater here (keyed by position): imported ones are "others" too.
        analysis = metrics.analyse_prompt([r.tiers for r in group])
        prompts.append(
            PromptAgreement(
                prompt_id=prompt_id,
                rankings=len(group),
                agreement=analysis.agreement,
                consensus=analysis.consensus.tiers,
                scores=analysis.consensus.scores,
            )
        )
        for r, tau in zip(group, analysis.with_others, strict=True):
            if r.labeler_id is None:
                continue
            tally = tallies[r.labeler_id]
            tally.rankings += 1
            if r.seconds_spent is not None:
                tally.seconds.append(r.seconds_spent)
            if len(group) > 1:
                tally.shared += 1
                if tau is not None:
                    tally.taus.append(tau)

    defined = [p.agreement for p in prompts if p.agreement is not None]
    return ProjectAgreement(
        project_id=project.id,
        rankings_per_prompt=project.rankings_per_prompt,
        rankings=sum(p.rankings for p in prompts),
        progress=AgreementProgress(
            prompts=_prompt_count(session, project.id),
            ranked=len(prompts),
            complete=sum(p.rankings >= project.rankings_per_prompt for p in prompts),
            ranked_twice=sum(p.rankings >= 2 for p in prompts),
            with_agreement=len(defined),
        ),
        mean_agreement=fmean(defined) if defined else None,
        histogram=_bins(defined),
        labelers=sorted(_labeler_rows(session, tallies), key=_least_agreement_first),
        prompts=prompts,
    )


def _labeler_rows(session: Session, tallies: dict[int, _LabelerTally]) -> Iterable[LabelerAgreement]:
    names = _usernames(session, tallies.keys())
    for labeler_id, tally in tallies.items():
        yield LabelerAgreement(
            labeler_id=labeler_id,
            username=names.get(labeler_id, f"user {labeler_id}"),
            rankings=tally.rankings,
            median_seconds=median(tally.seconds) if tally.seconds else None,
            agreement=fmean(tally.taus) if tally.taus else None,
            prompts_shared=tally.shared,
            prompts_defined=len(tally.taus),
            histogram=_bins(tally.taus),
        )


def _least_agreement_first(row: LabelerAgreement) -> tuple[bool, float, str]:
    return (row.agreement is None, row.agreement or 0.0, row.username)


def _bins(values: list[float]) -> list[HistogramBin]:
    return [HistogramBin(lower=b.lower, upper=b.upper, count=b.count) for b in metrics.histogram(values)]


def _usernames(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    ids = list(user_ids)
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


def _prompt_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count(Prompt.id)).where(Prompt.project_id == project_id)) or 0
