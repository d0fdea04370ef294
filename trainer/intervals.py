"""A 95% interval for a held-out pairwise accuracy, honest about how the pairs were drawn.

The pairs of one prompt are not independent draws: they share the prompt, its completions and its
labeler, so a plain binomial interval over pairs is too narrow. The interval here is the wider of

- the Wilson score interval over the pairs (right when pairs are independent), and
- a cluster bootstrap over prompts (resample whole prompts with replacement, 2,000 draws, percentiles),
  which widens with the correlation inside a prompt,

and with fewer than ``MIN_PROMPTS`` held-out prompts it is (0, 1): too few prompts to say anything.
A reward model is "better than chance" only when the lower bound is above 0.5.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

Z95 = 1.959963984540054
MIN_PROMPTS = 5
BOOTSTRAP_DRAWS = 2000


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap_interval(
    correct: Sequence[bool], groups: Sequence[int], draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the pooled accuracy when whole groups (prompts) are resampled."""
    tallies: dict[int, list[int]] = defaultdict(lambda: [0, 0])  # group -> [correct, pairs]
    for ok, group in zip(correct, groups, strict=True):
        tallies[group][0] += int(ok)
        tallies[group][1] += 1
    cells = list(tallies.values())
    rng = random.Random(seed)
    estimates = []
    for _ in range(draws):
        sample = rng.choices(cells, k=len(cells))
        estimates.append(sum(c for c, _ in sample) / sum(n for _, n in sample))
    estimates.sort()
    return estimates[int(0.025 * (draws - 1))], estimates[math.ceil(0.975 * (draws - 1))]


def accuracy_with_interval(correct: Sequence[bool], groups: Sequence[int]) -> dict[str, float]:
    """``accuracy/eval`` with its 95% interval and what it was measured on, as metric keys."""
    pairs, prompts = len(correct), len(set(groups))
    accuracy = sum(correct) / pairs if pairs else 0.0
    if prompts < MIN_PROMPTS:
        low, high = 0.0, 1.0
    else:
        w_low, w_high = wilson_interval(sum(correct), pairs)
        b_low, b_high = cluster_bootstrap_interval(correct, groups)
        low, high = min(w_low, b_low), max(w_high, b_high)
    return {
        "accuracy/eval": accuracy,
        "accuracy/eval_low": low,
        "accuracy/eval_high": high,
        "eval/pairs": float(pairs),
        "eval/prompts": float(prompts),
    }
