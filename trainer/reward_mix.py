"""Several rewards as one (PPO against, say, the project's reward model plus a safety classifier).

Each reward's scores are standardised by the mean and standard deviation it gave the first completions it
scored, which come from the starting policy (the held-out evaluation before training, or the first
rollout). Those constants are fixed for the run: a drifting normalisation would hide the very improvement
PPO is after. The mix is the weighted sum of the standardised scores; each standardised component's mean
is kept for the run page's curves. The constants are written beside the run's checkpoint, so a resumed
run scores exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from trainer.reward_model import RewardScorer

NORMALISATION_FILE = "reward_normalisation.json"
COMPONENT_PREFIX = "reward/component/"
"""Metric keys of the components' curves: ``reward/component/<name>``."""


@dataclass(frozen=True)
class RewardSpec:
    """One reward of a mix: a reward model directory, how it is read, its weight and its curve's name."""

    directory: str
    weight: float
    name: str
    label: int | None = None
    reads: str = "chat"


class WeightedRewards:
    """Called like a ``RewardScorer``: (prompts, completions) -> (B,) the weighted standardised scores."""

    def __init__(self, specs: Sequence[RewardSpec], device, max_length: int | None, state_dir: Path) -> None:
        self.specs = list(specs)
        self.scorers = [
            RewardScorer(Path(s.directory), device, max_length, label=s.label, reads=s.reads) for s in specs
        ]
        self.tokenizer = self.scorers[0].tokenizer  # the first reward is the value model's starting point
        self.path = state_dir / NORMALISATION_FILE
        self.normalisation = self._saved()
        self.components: dict[str, float] = {}

    def __call__(self, prompts, completions) -> torch.Tensor:
        raw = torch.stack([scorer(prompts, completions).float() for scorer in self.scorers])  # (R, B)
        if self.normalisation is None:
            spread = raw.std(dim=1, unbiased=raw.shape[1] > 1)
            self.normalisation = list(
                zip(raw.mean(dim=1).tolist(), spread.clamp(min=1e-6).tolist(), strict=True)
            )
            self._save()
        means = torch.tensor([m for m, _ in self.normalisation], device=raw.device).unsqueeze(1)
        stds = torch.tensor([s for _, s in self.normalisation], device=raw.device).unsqueeze(1)
        standardised = (raw - means) / stds
        self.components = {
            COMPONENT_PREFIX + spec.name: value
            for spec, value in zip(self.specs, standardised.mean(dim=1).tolist(), strict=True)
        }
        weights = torch.tensor([s.weight for s in self.specs], device=raw.device).unsqueeze(1)
        return (weights * standardised).sum(dim=0)

    def _key(self) -> list[dict]:
        return [{"directory": s.directory, "label": s.label, "reads": s.reads} for s in self.specs]

    def _saved(self) -> list[tuple[float, float]] | None:
        if not self.path.is_file():
            return None
        saved = json.loads(self.path.read_text())
        if saved.get("rewards") != self._key():
            return None
        return [tuple(pair) for pair in saved["mean_std"]]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"rewards": self._key(), "mean_std": self.normalisation}
        self.path.write_text(json.dumps(record, indent=2) + "\n")


def reward_scorer(config, reward_dir: Path, device, state_dir: Path):
    """PPO's reward: the one reward model (a ``RewardScorer``), or, with ``config.extra_rewards``, the
    weighted mix of it (weight ``config.reward_weight``) and the others."""
    if not config.extra_rewards:
        return RewardScorer(
            reward_dir, device, config.reward_max_length, label=config.reward_label, reads=config.reward_input
        )
    primary = RewardSpec(
        str(reward_dir), config.reward_weight, config.reward_name, config.reward_label, config.reward_input
    )
    extras = [
        RewardSpec(e["directory"], float(e["weight"]), str(e["name"]), e.get("label"), e.get("reads", "chat"))
        for e in config.extra_rewards
    ]
    return WeightedRewards([primary, *extras], device, config.reward_max_length, state_dir)
