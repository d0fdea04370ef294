"""The agreement maths on small cases worked out by hand.

Kendall tau-b over the n0 = C(n, 2) pairs of the common completions:
    tau_b = (concordant - discordant) / sqrt((n0 - ties_a) * (n0 - ties_b))
where ties_a (ties_b) counts the pairs tied in ranking a (b); a pair tied in either is neither.
"""

import math
import random

import pytest

from app.agreement.metrics import (
    analyse_prompt,
    comparison_matrix,
    consensus,
    histogram,
    kendall_tau_b,
    labeler_agreement_with_others,
    prompt_agreement,
    tier_numbers,
    tiers_from_scores,
)
from app.labeling.expansion import expand_tiers

ABC = [[1], [2], [3]]
CBA = [[3], [2], [1]]


def test_tier_numbers() -> None:
    assert tier_numbers([[42], [41, 44], [43]]) == {42: 0, 41: 1, 44: 1, 43: 2}


# --- Kendall tau-b ---------------------------------------------------------------------------------


def test_identical_rankings_agree_fully() -> None:
    # 3 pairs, all concordant: (3 - 0) / sqrt(3 * 3) = 1
    assert kendall_tau_b(ABC, ABC) == pytest.approx(1.0)


def test_reversed_rankings_disagree_fully() -> None:
    # 3 pairs, all discordant: (0 - 3) / 3 = -1
    assert kendall_tau_b(ABC, CBA) == pytest.approx(-1.0)


def test_one_adjacent_swap_of_three() -> None:
    # 1>2>3 against 2>1>3: (1,2) discordant, (1,3) and (2,3) concordant: (2 - 1) / 3 = 1/3
    assert kendall_tau_b(ABC, [[2], [1], [3]]) == pytest.approx(1 / 3)


def test_one_adjacent_swap_of_four() -> None:
    # 6 pairs, 1 discordant: (5 - 1) / 6 = 2/3
    assert kendall_tau_b([[1], [2], [3], [4]], [[1], [3], [2], [4]]) == pytest.approx(2 / 3)


def test_a_tie_in_one_ranking() -> None:
    # a = 1 > {2, 3} > 4, b = 1 > 2 > 3 > 4. Of the n0 = 6 pairs, (2,3) is tied in a (ties_a = 1, ties_b = 0)
    # and the other 5 are concordant: tau_b = (5 - 0) / sqrt((6 - 1) * (6 - 0)) = 5 / sqrt(30) = 0.91287
    tau = kendall_tau_b([[1], [2, 3], [4]], [[1], [2], [3], [4]])
    assert tau == pytest.approx(5 / math.sqrt(30))
    assert tau == pytest.approx(0.912870929)


def test_ties_in_both_rankings() -> None:
    # a = {1, 2} > 3, b = 1 > {2, 3}: (1,2) tied in a, (2,3) tied in b, (1,3) concordant.
    # tau_b = (1 - 0) / sqrt((3 - 1) * (3 - 1)) = 1/2
    assert kendall_tau_b([[1, 2], [3]], [[1], [2, 3]]) == pytest.approx(0.5)


def test_the_same_tie_in_both() -> None:
    # a = b = 1 > {2, 3}: (1,2) and (1,3) concordant, (2,3) tied in both: 2 / sqrt(2 * 2) = 1
    assert kendall_tau_b([[1], [2, 3]], [[1], [2, 3]]) == pytest.approx(1.0)


def test_symmetric() -> None:
    a, b = [[4], [1, 2], [3]], [[1], [3], [4, 2]]
    assert kendall_tau_b(a, b) == pytest.approx(kendall_tau_b(b, a))


def test_only_common_completions_count() -> None:
    # Completion 9 is only in a and 7 only in b; over {1, 2, 3} the rankings are identical.
    assert kendall_tau_b([[9], [1], [2], [3]], [[1], [7], [2], [3]]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([[1, 2, 3]], ABC),  # a ties everything: the denominator is 0
        (ABC, [[1, 2, 3]]),
        ([[1, 2, 3]], [[1, 2, 3]]),
        ([[1], [2]], [[3], [1]]),  # one common completion
        ([[1], [2]], [[3], [4]]),  # none in common
        ([[1, 2], [3]], [[2], [1], [4]]),  # common {1, 2}, tied in a
        ([], []),
    ],
)
def test_undefined_tau_is_none(a, b) -> None:
    assert kendall_tau_b(a, b) is None


# --- per prompt ------------------------------------------------------------------------------------


def test_prompt_agreement_is_the_mean_over_pairs() -> None:
    # Pairs: (ABC, ABC) = 1, (ABC, CBA) = -1, (ABC, CBA) = -1: mean -1/3
    assert prompt_agreement([ABC, ABC, CBA]) == pytest.approx(-1 / 3)
    # (ABC, ABC) = 1, (ABC, 2>1>3) = 1/3 twice: (1 + 1/3 + 1/3) / 3 = 5/9
    assert prompt_agreement([ABC, ABC, [[2], [1], [3]]]) == pytest.approx(5 / 9)


def test_prompt_agreement_leaves_undefined_pairs_out() -> None:
    # The all-tied ranking makes both of its pairs undefined; only (ABC, ABC) = 1 is left.
    assert prompt_agreement([ABC, ABC, [[1, 2, 3]]]) == pytest.approx(1.0)


@pytest.mark.parametrize("rankings", [[], [ABC], [ABC, [[1, 2, 3]]], [[[1, 2, 3]], [[1, 2, 3]]]])
def test_prompt_agreement_none(rankings) -> None:
    assert prompt_agreement(rankings) is None


# --- consensus -------------------------------------------------------------------------------------


def test_consensus_follows_the_majority() -> None:
    # Two say 1 > 2 > 3, one says 3 > 2 > 1: each pair is won 2 to 1 by the majority's choice.
    scores, tiers = consensus([ABC, ABC, CBA])
    assert tiers == [[1], [2], [3]]
    assert scores[1] > scores[2] > scores[3]
    assert sum(scores.values()) == pytest.approx(0.0)  # log-strengths, mean 0


def test_consensus_of_one_ranking_is_that_ranking() -> None:
    assert consensus([[[4], [2, 3], [1]]]).tiers == [[4], [2, 3], [1]]


def test_consensus_ties_what_cancels_out() -> None:
    # 1 > 2 > 3 and 3 > 2 > 1: every pair is won once each way, so every score is equal.
    scores, tiers = consensus([ABC, CBA])
    assert tiers == [[1, 2, 3]]
    assert all(score == pytest.approx(0.0) for score in scores.values())


def test_consensus_with_no_strict_pair_is_all_tied() -> None:
    # Without comparisons the regulariser alone decides: every score 0.
    assert consensus([[[1, 2, 3]]]) == (
        {1: pytest.approx(0.0), 2: pytest.approx(0.0), 3: pytest.approx(0.0)},
        [[1, 2, 3]],
    )


def test_consensus_edge_cases() -> None:
    assert consensus([]) == ({}, [])
    assert consensus([[[5]]]) == ({5: 0.0}, [[5]])


def test_consensus_is_finite_when_one_completion_wins_everything() -> None:
    scores, tiers = consensus([[[1], [2]]])
    assert tiers == [[1], [2]]
    assert all(math.isfinite(score) for score in scores.values())


def test_consensus_covers_every_completion_seen() -> None:
    # The rankings cover different completions; 3 is only in the second one.
    _, tiers = consensus([[[1], [2]], [[2], [3]]])
    assert tiers == [[1], [2], [3]]


def test_comparison_matrix_counts_the_pairs_the_comparisons_table_stores() -> None:
    rankings = [[[0], [2, 3], [1]], [[3], [0]], [[1, 2, 3, 0]]]
    wins = comparison_matrix(4, rankings)
    expected = [[0] * 4 for _ in range(4)]
    for tiers in rankings:
        for pair in expand_tiers(tiers):
            expected[pair.chosen_id][pair.rejected_id] += 1
    assert wins.tolist() == expected


def test_tiers_from_scores_ties_within_tolerance() -> None:
    assert tiers_from_scores({7: 1.0, 3: 1.0 + 1e-9, 5: -0.5, 9: 0.2}) == [[3, 7], [9], [5]]


# --- leave-one-out ---------------------------------------------------------------------------------


def test_dissenter_of_three_has_the_lowest_agreement() -> None:
    # a and b agree, c reverses them.
    # c against consensus(a, b) = 1 > 2 > 3: -1.
    # a against consensus(b, c): b and c cancel out, so their consensus ties everything: undefined (None);
    # the same for b. The dissenter is the only one below, and as low as it gets.
    result = labeler_agreement_with_others({"a": ABC, "b": ABC, "c": CBA})
    assert result == {"a": None, "b": None, "c": pytest.approx(-1.0)}


def test_dissenter_of_four() -> None:
    # a, b, d agree and c reverses. For a, the others b, d, c win each pair 2 to 1 for b and d's order:
    # the consensus is 1 > 2 > 3, tau 1. For c, the others all say 1 > 2 > 3: tau -1.
    result = labeler_agreement_with_others({"a": ABC, "b": ABC, "d": ABC, "c": CBA})
    assert result == {"a": pytest.approx(1.0), "b": pytest.approx(1.0), "d": pytest.approx(1.0), "c": -1.0}


def test_leave_one_out_with_a_mild_disagreement() -> None:
    # a = b = 1 > 2 > 3, c = 2 > 1 > 3.
    # c against consensus(a, b) = 1 > 2 > 3: one adjacent swap of three, 1/3.
    # a against consensus(b, c): (1,2) won once each way, 3 loses both others twice, so the consensus is
    # {1, 2} > 3. Pairs: (1,2) tied in the consensus, (1,3) and (2,3) concordant:
    # 2 / sqrt((3 - 0) * (3 - 1)) = 2 / sqrt(6) = 0.8165. The same for b.
    result = labeler_agreement_with_others({"a": ABC, "b": ABC, "c": [[2], [1], [3]]})
    assert result["a"] == pytest.approx(2 / math.sqrt(6))
    assert result["b"] == pytest.approx(2 / math.sqrt(6))
    assert result["c"] == pytest.approx(1 / 3)
    assert min(result, key=lambda k: result[k]) == "c"


def test_alone_on_a_prompt_is_none() -> None:
    assert labeler_agreement_with_others({"a": ABC}) == {"a": None}
    assert labeler_agreement_with_others({}) == {}


def test_keys_can_be_anything_hashable() -> None:
    result = labeler_agreement_with_others({(1, "x"): ABC, 17: ABC})
    assert result == {(1, "x"): pytest.approx(1.0), 17: pytest.approx(1.0)}


# --- all at once, and the shortcuts the caches take ------------------------------------------------


def random_ranking(rng: random.Random, ids: list[int]) -> list[list[int]]:
    """A random weak order of `ids` (sometimes with ties), in a random id range."""
    order = rng.sample(ids, len(ids))
    tiers: list[list[int]] = []
    for cid in order:
        if tiers and rng.random() < 0.3:
            tiers[-1].append(cid)
        else:
            tiers.append([cid])
    return tiers


def test_consensus_of_one_ranking_is_always_that_ranking() -> None:
    # labeler_agreement_with_others compares with the one other ranking directly instead of fitting it.
    rng = random.Random(3)
    for _ in range(200):
        k = rng.randint(2, 9)
        ranking = random_ranking(rng, rng.sample(range(1, 1000), k))
        assert consensus([ranking]).tiers == [sorted(ids) for ids in ranking]


def test_analyse_prompt_gives_the_same_numbers_as_the_functions() -> None:
    rng = random.Random(5)
    for _ in range(100):
        ids = rng.sample(range(1, 10_000), rng.randint(2, 6))
        rankings = [random_ranking(rng, ids) for _ in range(rng.randint(1, 5))]
        analysis = analyse_prompt(rankings)
        assert analysis.agreement == prompt_agreement(rankings)
        assert analysis.consensus == consensus(rankings)
        loo = labeler_agreement_with_others(dict(enumerate(rankings)))
        assert analysis.with_others == [loo[i] for i in range(len(rankings))]


def test_results_do_not_depend_on_the_ids_or_the_order_of_rankings() -> None:
    # The caches key on shapes (ids renamed by their order) with the rankings sorted: the same shapes
    # with other ids, or the rankings in another order, give the same numbers, mapped back right.
    a, b, c = [[1], [2], [3]], [[2], [1], [3]], [[3], [1, 2]]
    assert labeler_agreement_with_others({"a": a, "b": b, "c": c}) == labeler_agreement_with_others(
        {"c": c, "a": a, "b": b}
    )
    shifted = {k: [[cid * 10 + 7 for cid in tier] for tier in r] for k, r in {"a": a, "b": b, "c": c}.items()}
    assert labeler_agreement_with_others(shifted) == labeler_agreement_with_others({"a": a, "b": b, "c": c})
    tiers = consensus(list(shifted.values())).tiers
    assert tiers == [[cid * 10 + 7 for cid in tier] for tier in consensus([a, b, c]).tiers]


# --- histogram -------------------------------------------------------------------------------------


def test_histogram_bins() -> None:
    bins = histogram([-1.0, -0.95, 0.1, 1 / 3, 1.0, 1.0])
    assert [(b.lower, b.upper) for b in bins][:2] == [(-1.0, -0.8), (-0.8, -0.6)]
    assert bins[-1].upper == 1.0
    # -1 and -0.95 in [-1, -0.8); 0.1 in [0, 0.2); 1/3 in [0.2, 0.4); 1.0 twice in the last, closed bin
    assert [b.count for b in bins] == [2, 0, 0, 0, 0, 1, 1, 0, 0, 2]


def test_histogram_of_nothing() -> None:
    assert [b.count for b in histogram([])] == [0] * 10
