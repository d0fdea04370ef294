"""A ranking's tiers, expanded into the pairwise comparisons training uses.

Tiers are best first; completions in one tier are tied. Every completion is preferred to every
completion in a later tier, so K completions in strict tiers give C(K, 2) pairs, minus the tied ones.
"""

from collections import Counter
from collections.abc import Iterable
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


@dataclass(frozen=True)
class TierCheck:
    """How tiers fall short of listing each expected completion exactly once (all empty: they do)."""

    repeated: list[int]
    unknown: list[int]
    missing: list[int]

    def __bool__(self) -> bool:
        return bool(self.repeated or self.unknown or self.missing)

    def problems(self, *, unknown: str, noun: str) -> str:
        """'repeated ids [3]; ids not in this assignment [9]' in the caller's words."""
        parts = [f"repeated {noun} {self.repeated}"] if self.repeated else []
        parts += [f"{unknown} {self.unknown}"] if self.unknown else []
        parts += [f"missing {noun} {self.missing}"] if self.missing else []
        return "; ".join(parts)


def check_tiers(tiers: list[list[int]], expected: Iterable[int]) -> TierCheck:
    listed = [cid for tier in tiers for cid in tier]
    expected = set(expected)
    return TierCheck(
        repeated=sorted(cid for cid, n in Counter(listed).items() if n > 1),
        unknown=sorted(set(listed) - expected),
        missing=sorted(expected - set(listed)),
    )
