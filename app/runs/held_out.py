"""What the policy-training kinds (SFT, DPO, PPO's held-out prompts aside) share when a run is queued: the
starting policy named in the request, and the prompts held out of training."""

import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.exports.schemas import ExportPlan
from app.exports.service import comparisons_per_prompt
from app.models_registry import service as registry
from app.projects.models import Project
from app.projects.schemas import GenerationSettings


def starting_policy(session: Session, spec: str | int, *, field: str) -> dict[str, Any]:
    """The config entries that say where a run's starting policy lives: `"default"` (the bundled one) or
    a registered policy version (its artifact; 422 naming `field` otherwise). `base_model` is what the
    new version records it was trained from."""
    if isinstance(spec, str) and spec != "default":
        raise InvalidInput(
            f"{field} must be 'default' or the id of a registered policy version (GET /models?kind=policy).",
            code="unknown_model",
            details={"field": field},
        )
    if spec == "default":
        return {"policy_artifact": None, "base_model": "default"}
    version = registry.policy_version(session, int(spec), field=field)
    return {
        "policy_artifact": version.artifact,
        "base_model": f"model:{version.id}",
        "base_model_name": version.name or f"model {version.id}",  # the new model's card names it
    }


def project_sampling(project: Project) -> dict[str, float]:
    """How the project samples completions: a trained policy's generation_config.json says so, so that a
    plain `generate()` elsewhere samples the policy as PrefLab does (trainer/model_files.py)."""
    settings = GenerationSettings.model_validate(project.generation)
    return {"temperature": settings.temperature, "top_p": settings.top_p}


def held_out_prompt_ids(prompt_ids: Sequence[int], fraction: float, seed: int) -> list[int]:
    """A seeded share of the prompts, whole (never a prompt in both halves); none when fewer than two.
    The worker trains on the rest, and an evaluation round of the new policy defaults to these."""
    distinct = sorted(set(prompt_ids))
    if fraction <= 0 or len(distinct) < 2:
        return []
    count = min(max(round(len(distinct) * fraction), 1), len(distinct) - 1)
    return sorted(random.Random(seed).sample(distinct, count))


MIN_HELD_OUT_PAIRS = 20
"""Fewer held-out pairs than this and a held-out accuracy means nothing: its 95% interval spans about
±0.2 at best, and the pairs of a few prompts are far from independent."""
MIN_HELD_OUT_PROMPTS = 5
"""trainer/intervals.py's MIN_PROMPTS: below it the interval is (0, 1)."""


def require_enough_held_out(session: Session, *, plan: ExportPlan, eval_fraction: float, force: bool) -> None:
    """Refuse (409 `too_little_data`, unless forced) a run on comparisons whose held-out split would be
    too small to say whether the model learnt anything: the trainer holds out round(fraction x prompts)
    whole prompts (at least one), and the estimate here takes their average share of the pairs."""
    if force:  # the admin knows; a run on nothing at all then fails in the worker, saying so
        return
    per_prompt = comparisons_per_prompt(session.connection(), plan)
    prompts, pairs = len(per_prompt), sum(per_prompt.values())
    if pairs == 0:
        raise InvalidInput(
            "No comparisons match this run's filters: rank some completions first (or import preference "
            "data), or relax the filters.",
            code="no_comparisons",
            details={"field": "filters"},
        )
    held_prompts = min(
        max(round(eval_fraction * prompts), 1 if eval_fraction > 0 else 0), max(prompts - 1, 0)
    )
    held_pairs = round(pairs * held_prompts / prompts)
    if held_pairs >= MIN_HELD_OUT_PAIRS and held_prompts >= MIN_HELD_OUT_PROMPTS:
        return
    raise Conflict(
        f"Too little data to measure this run: {pairs} comparisons on {prompts} prompts leave about "
        f"{held_pairs} held-out pairs on {held_prompts} prompts (at least {MIN_HELD_OUT_PAIRS} pairs on "
        f"{MIN_HELD_OUT_PROMPTS} prompts are needed for a held-out accuracy that means anything). Label "
        'more prompts, raise eval_fraction, or start anyway ("force": true; on the page, "Start anyway").',
        code="too_little_data",
        details={"field": "filters", "pairs": pairs, "prompts": prompts, "held_out_pairs": held_pairs},
    )
