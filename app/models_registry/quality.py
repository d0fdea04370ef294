"""A reward model's held-out figures as the pages and the API show them, and the chance test.

The worker reports ``accuracy/eval`` with its 95% interval (``accuracy/eval_low``/``_high``: the wider
of a Wilson interval over pairs and a bootstrap over prompts, (0, 1) with fewer than 5 prompts) and what
it was measured on (``eval/pairs``, ``eval/prompts``); see trainer/intervals.py. A reward model is
better than chance only when the interval's lower bound is above 0.5. A model without an interval (an
older run, or no held-out prompts) was not shown better than chance.
"""

from dataclasses import dataclass
from typing import Any

from app.models_registry.models import ModelKind, ModelOrigin

CHANCE = 0.5


@dataclass(frozen=True)
class HeldOut:
    accuracy: float
    low: float | None
    high: float | None
    pairs: int | None
    prompts: int | None

    @property
    def better_than_chance(self) -> bool:
        return self.low is not None and self.low > CHANCE

    def describe(self) -> str:
        """'0.563 [0.49, 0.63] on 120 pairs of 12 prompts', or what is missing."""
        text = f"{self.accuracy:.3f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low:.2f}, {self.high:.2f}]"
        if self.pairs is not None and self.prompts is not None:
            text += f" on {self.pairs:,} pairs of {self.prompts:,} held-out prompts"
        else:
            text += " (no interval recorded)"
        return text


def held_out(metrics: dict[str, Any]) -> HeldOut | None:
    """A version's held-out pairwise accuracy (a reward model's, or a DPO policy's preference accuracy:
    its implicit reward ranks the chosen answer first), or None when its run measured none."""
    accuracy = metrics.get("accuracy/eval")
    if not isinstance(accuracy, int | float):
        return None
    return HeldOut(
        accuracy=float(accuracy),
        low=_number(metrics.get("accuracy/eval_low")),
        high=_number(metrics.get("accuracy/eval_high")),
        pairs=_count(metrics.get("eval/pairs")),
        prompts=_count(metrics.get("eval/prompts")),
    )


def chance_verdict(kind: str, metrics: dict[str, Any], origin: str = ModelOrigin.trained.value) -> str | None:
    """Why a reward model is not shown better than chance, or None when it is (or is a policy, or was
    imported: a classifier from elsewhere was never measured on this server's preferences)."""
    if kind != ModelKind.reward.value or origin == ModelOrigin.imported.value:
        return None
    figures = held_out(metrics)
    if figures is None:
        return "it has no held-out accuracy (no prompts were held out, or it was not measured)"
    if figures.low is None:
        return f"its held-out accuracy {figures.describe()} has no interval"
    if not figures.better_than_chance:
        return f"its held-out accuracy {figures.describe()} is not better than chance (reaches 0.5)"
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None
