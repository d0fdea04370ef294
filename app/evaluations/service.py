"""Evaluation rounds: create one (copy prompts, queue the two-model generation) and score it.
No HTTP types here.

A round is a child project with K = 2, so that everything K touches (readiness, task hand-out, the
ranking screen, counts) works unchanged; `EvaluationRound` links it to the project it evaluates and
says which completion model is the candidate and which the baseline.
"""

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import User
from app.errors import Conflict, InvalidInput, NotFound
from app.evaluations.models import EvaluationRound
from app.evaluations.schemas import EvaluationCreate, EvaluationOut, RoundStatus, SideFlags
from app.ids import parse_id
from app.jobs import service as jobs
from app.jobs.models import Job, JobStatus
from app.labeling.models import Ranking
from app.models_registry import service as registry
from app.models_registry.models import ModelVersion
from app.names import name_key
from app.projects import service as projects
from app.projects.models import Project
from app.projects.schemas import ProjectCreate
from app.prompts.models import Completion, Prompt
from app.runs.generation.service import KIND as GENERATE

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
MAX_NAME = 100  # Project.name's length
ACTIVE = (JobStatus.queued.value, JobStatus.running.value)
FAILED = (JobStatus.failed.value, JobStatus.cancelled.value)


# --- creating a round ------------------------------------------------------------------------------


def create_round(
    session: Session,
    *,
    project: Project,
    request: EvaluationCreate,
    author: User | None,
    model_dirs: Sequence[Path] = (),
) -> EvaluationRound:
    """Check everything first (422, nothing written), then copy the prompts and queue the generation."""
    if round_of_project(session, project.id) is not None:
        raise InvalidInput(
            f"Project {project.id} is itself an evaluation round; start rounds from the project it "
            "evaluates.",
            code="evaluation_of_evaluation",
            details={"field": "project_id"},
        )
    candidate = registry.policy_version(session, request.candidate, field="candidate")
    candidate_job = session.get(Job, candidate.job_id) if candidate.job_id is not None else None
    baseline_value = (
        request.baseline if request.baseline is not None else starting_policy(candidate, candidate_job)
    )
    baseline = registry.generation_model(session, baseline_value, model_dirs=model_dirs, field="baseline")
    if baseline["model"] == f"model:{candidate.id}":
        raise InvalidInput(
            f"The baseline is the candidate itself (model {candidate.id}); name another baseline.",
            code="same_model",
            details={"field": "baseline"},
        )
    prompt_ids, source = _choose_prompts(session, project=project, job=candidate_job, request=request)

    number = (
        session.scalar(
            select(func.max(EvaluationRound.number)).where(EvaluationRound.project_id == project.id)
        )
        or 0
    ) + 1
    child = projects.create_project(
        session,
        data=ProjectCreate(
            name=_round_name(session, project.name, number),
            instructions_md=projects.current_instructions(project).body_md,
            completions_per_prompt=2,
            rankings_per_prompt=request.rankings_per_prompt or project.rankings_per_prompt,
            flags=list(project.flags),
            generation={**project.generation, "model": candidate.id},
        ),
        author=author,
    )
    originals = session.scalars(select(Prompt).where(Prompt.id.in_(prompt_ids)).order_by(Prompt.id))
    session.add_all(
        Prompt(
            project_id=child.id,
            messages=original.messages,
            metadata_={**original.metadata_, "evaluated_prompt_id": original.id},
            source=f"evaluation:{project.id}",
        )
        for original in originals
    )
    round_ = EvaluationRound(
        project_id=project.id,
        round_project_id=child.id,
        number=number,
        candidate=f"model:{candidate.id}",
        baseline=baseline["model"],
        candidate_id=candidate.id,
        prompts=len(prompt_ids),
        prompt_source=source,
        seed=request.seed,
        created_by_id=author.id if author else None,
    )
    session.add(round_)
    session.flush()
    queue_round_generation(
        session, round_=round_, created_by_id=author.id if author else None, model_dirs=model_dirs
    )
    return round_


def queue_round_generation(
    session: Session, *, round_: EvaluationRound, created_by_id: int | None, model_dirs: Sequence[Path] = ()
) -> tuple[Job, bool]:
    """Queue a job that gives every prompt of the round one completion from each model (or return the
    one already queued or running)."""
    existing = jobs.active_job(session, project_id=round_.round_project_id, kind=GENERATE)
    if existing is not None and existing.config.get("models"):
        return existing, False
    if existing is not None:  # a one-model job queued from the round's project page: it cannot fill a round
        jobs.cancel(session, job=existing)
    child = projects.get_project(session, round_.round_project_id)
    config = {
        "k": 2,
        "generation": {key: value for key, value in child.generation.items() if key != "model"},
        # One completion per model per prompt; each stored completion records which model wrote it.
        "models": [
            registry.generation_model(session, round_.candidate, model_dirs=model_dirs, field="candidate"),
            registry.generation_model(session, round_.baseline, model_dirs=model_dirs, field="baseline"),
        ],
        "evaluation_round": round_.id,
    }
    job = jobs.enqueue(
        session, kind=GENERATE, project_id=child.id, config=config, created_by_id=created_by_id
    )
    round_.job_id = job.id
    session.flush()
    return job, True


def starting_policy(candidate: ModelVersion, job: Job | None) -> str | int:
    """The policy a candidate's training run (PPO, DPO, SFT) started from: the run's `policy`, else the
    version's base model."""
    if job is not None and job.config.get("policy") is not None:
        return job.config["policy"]
    return candidate.base_model


def _choose_prompts(
    session: Session, *, project: Project, job: Job | None, request: EvaluationCreate
) -> tuple[list[int], str]:
    """The candidate's held-out prompts when its PPO run was on this project, else a seeded sample of the
    project's labelable prompts; at most `request.prompts` either way (a seeded sample of them)."""
    labelable = set(
        session.scalars(select(Prompt.id).where(Prompt.project_id == project.id, Prompt.for_labeling()))
    )
    held_out = job.config.get("eval_prompt_ids") if job is not None and job.project_id == project.id else None
    pool = sorted({pid for pid in held_out or [] if isinstance(pid, int)} & labelable)
    source = "held_out" if pool else "sample"
    pool = pool or sorted(labelable)
    if not pool:
        raise InvalidInput(
            f"Project {project.id} has no prompts to evaluate on: upload prompts first.",
            code="no_prompts",
            details={"field": "prompts"},
        )
    chosen = (
        pool if len(pool) <= request.prompts else random.Random(request.seed).sample(pool, request.prompts)
    )
    return sorted(chosen), source


def _round_name(session: Session, parent: str, number: int) -> str:
    suffix = f" — evaluation {number}"
    name = parent[: MAX_NAME - len(suffix)] + suffix
    taken = session.scalar(select(Project.id).where(Project.name_key == name_key(name)))
    if taken is not None:
        raise Conflict(
            f"A project named '{name}' already exists; rename it and retry.",
            code="project_name_taken",
            details={"field": "name"},
        )
    return name


# --- reading rounds --------------------------------------------------------------------------------


def get_round(session: Session, round_id: int) -> EvaluationRound:
    round_ = session.get(EvaluationRound, round_id)
    if round_ is None:
        raise NotFound(f"No evaluation round with id {round_id}.", code="evaluation_not_found")
    return round_


def list_rounds(session: Session, *, project: Project) -> list[EvaluationRound]:
    return list(
        session.scalars(
            select(EvaluationRound)
            .where(EvaluationRound.project_id == project.id)
            .order_by(EvaluationRound.number.desc())
        )
    )


def round_of_project(session: Session, project_id: int) -> EvaluationRound | None:
    """The round whose own project this is (None for an ordinary project)."""
    return session.scalar(select(EvaluationRound).where(EvaluationRound.round_project_id == project_id))


# --- scoring ---------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a round's rankings say about candidate against baseline."""

    wins: int = 0
    ties: int = 0
    losses: int = 0
    none_acceptable: int = 0
    flags: dict[str, Counter] = field(default_factory=lambda: {"candidate": Counter(), "baseline": Counter()})
    scores: dict[int, list[float]] = field(default_factory=dict)  # prompt id -> one score per ranking

    def add(self, *, prompt_id: int, score: float) -> None:
        if score == 1.0:
            self.wins += 1
        elif score == 0.5:
            self.ties += 1
        else:
            self.losses += 1
        self.scores.setdefault(prompt_id, []).append(score)


def ranking_score(tiers: list[list[int]], *, candidate_id: int, baseline_id: int) -> float:
    """1 if the candidate's completion was ranked above the baseline's, 0.5 if they were tied, else 0."""
    tier = {cid: index for index, group in enumerate(tiers) for cid in group}
    if tier[candidate_id] < tier[baseline_id]:
        return 1.0
    return 0.5 if tier[candidate_id] == tier[baseline_id] else 0.0


def wilson_interval(mean: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion `mean` out of `n`.

    Used for the mean of per-prompt scores in [0, 1]: such a variable's variance is at most
    mean·(1 - mean), the binomial variance the interval assumes, so ties and several rankings per
    prompt (which only shrink the variance) leave it conservative, not too narrow.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (mean + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate(prompt_scores: list[float]) -> tuple[float, float, float] | None:
    """(win rate, 95% low, 95% high) over prompts, each prompt's score the mean of its rankings."""
    if not prompt_scores:
        return None
    mean = sum(prompt_scores) / len(prompt_scores)
    low, high = wilson_interval(mean, len(prompt_scores))
    return mean, low, high


def tally(session: Session, round_: EvaluationRound) -> Tally:
    """Score every ranking of the round that compares one candidate and one baseline completion."""
    models = dict(
        session.execute(
            select(Completion.id, Completion.model)
            .join(Prompt, Prompt.id == Completion.prompt_id)
            .where(Prompt.project_id == round_.round_project_id)
        ).all()
    )
    result = Tally()
    rankings = session.execute(
        select(Ranking.prompt_id, Ranking.tiers, Ranking.flags, Ranking.none_acceptable)
        .where(Ranking.project_id == round_.round_project_id)
        .order_by(Ranking.id)
    )
    for prompt_id, tiers, flags, none_acceptable in rankings:
        ranked = [cid for group in tiers for cid in group]
        side = {cid: _side(models.get(cid), round_) for cid in ranked}
        candidates = [cid for cid in ranked if side[cid] == "candidate"]
        baselines = [cid for cid in ranked if side[cid] == "baseline"]
        if len(ranked) != 2 or len(candidates) != 1 or len(baselines) != 1:
            continue  # not a candidate-against-baseline pair (completions added to the round by hand)
        result.add(
            prompt_id=prompt_id,
            score=ranking_score(tiers, candidate_id=candidates[0], baseline_id=baselines[0]),
        )
        result.none_acceptable += bool(none_acceptable)
        for key, names in (flags or {}).items():
            if (completion_id := parse_id(key)) in side:
                result.flags[side[completion_id]].update(names)
    return result


def _side(model: str | None, round_: EvaluationRound) -> str | None:
    return {round_.candidate: "candidate", round_.baseline: "baseline"}.get(model or "")


def round_out(session: Session, round_: EvaluationRound) -> EvaluationOut:
    """The round as the API and the pages show it: progress, status, and the candidate's win rate."""
    child = projects.get_project(session, round_.round_project_id)
    counts = projects.project_counts(session, [child.id])[child.id]
    ranked_per_prompt = dict(
        session.execute(
            select(Ranking.prompt_id, func.count(Ranking.id))
            .where(Ranking.project_id == child.id)
            .group_by(Ranking.prompt_id)
        ).all()
    )
    job = session.get(Job, round_.job_id) if round_.job_id is not None else None
    status = _status(
        job=job,
        prompts=round_.prompts,
        prompts_ready=counts.prompts_ready,
        complete=sum(1 for n in ranked_per_prompt.values() if n >= child.rankings_per_prompt),
    )
    scores = tally(session, round_)
    rate = win_rate([sum(s) / len(s) for s in scores.scores.values()])
    author = session.get(User, round_.created_by_id) if round_.created_by_id is not None else None
    return EvaluationOut(
        id=round_.id,
        project_id=round_.project_id,
        number=round_.number,
        round_project_id=child.id,
        round_project_name=child.name,
        candidate=round_.candidate,
        candidate_model_id=round_.candidate_id,
        baseline=round_.baseline,
        prompts=round_.prompts,
        prompt_source=round_.prompt_source,
        rankings_per_prompt=child.rankings_per_prompt,
        job_id=round_.job_id,
        status=status,
        prompts_ready=counts.prompts_ready,
        rankings=sum(ranked_per_prompt.values()),
        rankings_target=round_.prompts * child.rankings_per_prompt,
        wins=scores.wins,
        ties=scores.ties,
        losses=scores.losses,
        none_acceptable=scores.none_acceptable,
        flags=SideFlags(
            candidate=dict(sorted(scores.flags["candidate"].items())),
            baseline=dict(sorted(scores.flags["baseline"].items())),
        ),
        prompts_scored=len(scores.scores),
        win_rate=rate[0] if rate else None,
        ci_low=rate[1] if rate else None,
        ci_high=rate[2] if rate else None,
        created_by=author.username if author else None,
        created_at=round_.created_at,
    )


def _status(*, job: Job | None, prompts: int, prompts_ready: int, complete: int) -> RoundStatus:
    if job is not None and job.status in ACTIVE:
        return "generating"
    if prompts_ready < prompts and job is not None and job.status in FAILED:
        return "generation_failed"
    return "complete" if complete >= prompts else "labeling"


def context_of(session: Session, round_: EvaluationRound) -> dict[str, Any]:
    """The round and the project it evaluates, for the pages."""
    return {"round": round_out(session, round_), "parent": projects.get_project(session, round_.project_id)}
