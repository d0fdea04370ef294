"""A ranking's tiers, expanded into the pairwise comparisons training uses.

Tiers are best first; completions in one tier are tied. Every completion is preferred to every
completion in a later tier, so K completions in strict tiers give C(K, 2) pairs, minus the tied ones.
"""

from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Pair:
    chosen_id: int
    rejected_id: int
    chosen_tier: int
    rejected_tier: int


def expand_tiers(tiers: list[list[int]]) -> list[Pair]:
    tier_of = {cid: tier for tier, ids in enumerate(tiers) for cid in ids}
    pairs = []
    for a, b in combinations(sorted(tier_of, key=lambda cid: (tier_of[cid], cid)), 2):
        if tier_of[a] != tier_of[b]:  # a sorts first, so it is the better one
            pairs.append(Pair(a, b, tier_of[a], tier_of[b]))
    return pairs


def tied_pairs(tiers: list[list[int]]) -> list[tuple[int, int]]:
    """The pairs a ranking leaves tied (kept in the ranking, not written as comparisons)."""
    return [pair for ids in tiers for pair in combinations(sorted(ids), 2)]
