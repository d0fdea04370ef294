"""Rankings into comparisons: C(K,2) pairs minus the tied ones, each with its tiers."""

from math import comb

import pytest

from app.labeling.expansion import Pair, expand_tiers, tied_pairs


def test_strict_order_gives_every_pair() -> None:
    pairs = expand_tiers([[42], [41], [44], [43]])
    assert len(pairs) == comb(4, 2)
    assert Pair(42, 43, 0, 3) in pairs and Pair(41, 44, 1, 2) in pairs
    assert all(p.chosen_tier < p.rejected_tier for p in pairs)


def test_ties_are_not_comparisons() -> None:
    tiers = [[42], [41, 44], [43]]
    pairs = expand_tiers(tiers)
    assert {(p.chosen_id, p.rejected_id) for p in pairs} == {(42, 41), (42, 44), (42, 43), (41, 43), (44, 43)}
    assert len(pairs) == comb(4, 2) - len(tied_pairs(tiers)) == 5
    assert tied_pairs(tiers) == [(41, 44)]


@pytest.mark.parametrize(
    "tiers, expected",
    [
        ([[1, 2, 3]], 0),
        ([[1], [2]], 1),
        ([[1, 2], [3, 4]], 4),
        ([[1], [2], [3], [4], [5], [6], [7], [8], [9]], 36),
    ],
)
def test_pair_counts(tiers, expected) -> None:
    assert len(expand_tiers(tiers)) == expected
