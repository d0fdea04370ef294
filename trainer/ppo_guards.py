"""What keeps a PPO run from ending worse than it started: stop conditions and the best snapshot.

A run against a noisy reward model, or with too little KL control, drifts from the reference and can
collapse (the same answer every time). So, tracked at every step:

- **stop conditions** (:func:`stop_reason`): the batch's mean KL passes the ceiling (default: twice the
  target KL), its mean per-token entropy falls below ``min_entropy``, or (optional) the reward reaches
  ``target_reward``; the run ends with that reason;
- **the best snapshot** (:class:`BestSnapshot`): every ``eval_every`` steps and at the end, the policy is
  evaluated on the held-out prompts; the one with the highest held-out reward whose held-out KL is
  within the budget (the target KL, else the ceiling) is the one saved and registered, and the run says
  which (``"checkpoint": "best"`` at step s, or ``"last"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


def kl_ceiling_of(kl_ceiling: float | None, target_kl: float | None) -> float | None:
    """The configured ceiling, else twice the target KL (None: no target, no ceiling)."""
    if kl_ceiling is not None:
        return kl_ceiling
    return 2.0 * target_kl if target_kl is not None else None


def kl_budget_of(target_kl: float | None, ceiling: float | None) -> float:
    """How much held-out KL a snapshot may have to count as "within the budget"."""
    if target_kl is not None:
        return target_kl
    return ceiling if ceiling is not None else float("inf")


def stop_reason(
    metrics: dict[str, float],
    *,
    target_reward: float | None,
    kl_ceiling: float | None,
    min_entropy: float | None,
) -> str | None:
    """Why the run must stop after this step, or None."""
    if target_reward is not None and metrics["reward/score"] >= target_reward:
        return "target_reward"
    if kl_ceiling is not None and metrics["objective/kl"] >= kl_ceiling:
        return "kl_ceiling"
    if min_entropy is not None and metrics["objective/entropy_per_token"] < min_entropy:
        return "entropy_collapse"
    return None


@dataclass
class BestSnapshot:
    """The trainable weights of the best held-out evaluation so far, kept on the CPU.

    Only parameters that train are copied: with LoRA, just the adapters; with full fine-tuning, the
    whole policy (its size in CPU memory, e.g. 540 MB for the 135M default).
    """

    kl_budget: float
    step: int | None = None
    reward: float = float("-inf")
    kl: float = float("inf")
    weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    evaluations: list[dict[str, float]] = field(default_factory=list)

    def consider(self, model: nn.Module, *, step: int, reward: float, kl: float) -> bool:
        """Keep ``model``'s weights when it beats the best within the budget; True when kept."""
        self.evaluations.append({"step": step, "reward": reward, "kl": kl})
        within, best_within = kl <= self.kl_budget, self.kl <= self.kl_budget
        better = (within and (not best_within or reward > self.reward)) or (not best_within and kl < self.kl)
        if not better:
            return False
        self.step, self.reward, self.kl = step, reward, kl
        self.weights = {
            name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad
        }
        return True

    def restore_into(self, model: nn.Module) -> None:
        """Put the kept weights back (``model`` is the same module the snapshot was taken from)."""
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.weights.items():
                parameters[name].copy_(value.to(parameters[name].device))

    def summary(self, last_step: int) -> dict[str, Any]:
        """What the run registers: which checkpoint, and its held-out figures."""
        return {
            "checkpoint": "last" if self.step == last_step else "best",
            "checkpoint_step": self.step,
            "eval/reward_after": self.reward,
            "eval/kl_after": self.kl,
            "eval/within_kl_budget": float(self.kl <= self.kl_budget),
        }
