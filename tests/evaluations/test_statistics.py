"""The win rate and its interval, checked against numbers worked out by hand."""

import pytest

from app.evaluations.service import ranking_score, wilson_interval, win_rate


def test_ranking_scores_with_ties() -> None:
    assert ranking_score([[1], [2]], candidate_id=1, baseline_id=2) == 1.0
    assert ranking_score([[2], [1]], candidate_id=1, baseline_id=2) == 0.0
    assert ranking_score([[1, 2]], candidate_id=1, baseline_id=2) == 0.5


def test_wilson_interval_by_hand() -> None:
    # p = 0.7, n = 5, z = 1.96: centre (0.7 + 0.38416) / 1.76832 = 0.61310,
    # half-width 1.96 * sqrt(0.042 + 0.038416) / 1.76832 = 0.31432.
    low, high = wilson_interval(0.7, 5)
    assert low == pytest.approx(0.61310 - 0.31432, abs=1e-4) and high == pytest.approx(
        0.61310 + 0.31432, abs=1e-4
    )
    # All wins on 3 prompts: the interval stays below 1 on the low side and is clipped at 1.
    low, high = wilson_interval(1.0, 3)
    assert low == pytest.approx(0.4385, abs=1e-4) and high == 1.0
    assert wilson_interval(0.5, 4) == pytest.approx(
        (1 - wilson_interval(0.5, 4)[1], 1 - wilson_interval(0.5, 4)[0])
    )
    with pytest.raises(ValueError):
        wilson_interval(0.5, 0)


def test_win_rate_is_the_mean_over_prompts() -> None:
    assert win_rate([]) is None
    mean, low, high = win_rate([1.0, 1.0, 1.0, 0.5, 0.0])  # 3 wins, 1 tie, 1 loss
    assert mean == pytest.approx(0.7) and (low, high) == pytest.approx(wilson_interval(0.7, 5))
