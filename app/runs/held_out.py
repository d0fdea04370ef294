"""What the policy-training kinds (SFT, DPO, PPO's held-out prompts aside) share when a run is queued: the
starting policy named in the request, and the prompts held out of training."""

import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from app.errors import InvalidInput
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
