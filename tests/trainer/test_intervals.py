"""The held-out accuracy's 95% interval (trainer/intervals.py)."""

import random

import pytest

from trainer.intervals import (
    MIN_PROMPTS,
    accuracy_with_interval,
    cluster_bootstrap_interval,
    wilson_interval,
)


def test_wilson_matches_the_textbook_values() -> None:
    # 8 of 10: Wilson 95% interval [0.490, 0.943] (Newcombe 1998, Table I style check)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_too_few_prompts_say_nothing() -> None:
    figures = accuracy_with_interval([True] * 24, [1] * 12 + [2] * 12)
    assert figures["accuracy/eval"] == 1.0
    assert (figures["accuracy/eval_low"], figures["accuracy/eval_high"]) == (0.0, 1.0)
    assert figures["eval/pairs"] == 24 and figures["eval/prompts"] == 2 < MIN_PROMPTS


def test_correlated_pairs_widen_the_interval_beyond_wilson() -> None:
    # 20 prompts x 6 pairs, each prompt all right or all wrong: the evidence is 20 prompts, not 120 pairs
    groups = [g for g in range(20) for _ in range(6)]
    correct = [g < 13 for g in groups]  # 13 of 20 prompts right: 0.65
    figures = accuracy_with_interval(correct, groups)
    wilson_low, _ = wilson_interval(sum(correct), len(correct))
    assert figures["accuracy/eval"] == pytest.approx(0.65)
    assert figures["accuracy/eval_low"] < wilson_low - 0.05, "the bootstrap over prompts is wider"
    assert figures["accuracy/eval_low"] < 0.5 < figures["accuracy/eval_high"], "not shown better than chance"


def test_the_interval_covers_the_truth_about_95_percent_of_the_time() -> None:
    rng = random.Random(7)
    covered, trials = 0, 200
    for _ in range(trials):
        groups, correct = [], []
        for prompt in range(15):
            prompt_skill = min(1.0, max(0.0, rng.gauss(0.7, 0.15)))  # prompts differ in difficulty
            for _ in range(6):
                groups.append(prompt)
                correct.append(rng.random() < prompt_skill)
        figures = accuracy_with_interval(correct, groups)
        covered += figures["accuracy/eval_low"] <= 0.7 <= figures["accuracy/eval_high"]
    assert covered / trials >= 0.9


def test_the_bootstrap_is_seeded() -> None:
    groups = [g for g in range(10) for _ in range(3)]
    correct = [(i * 7) % 3 != 0 for i in range(30)]
    assert cluster_bootstrap_interval(correct, groups) == cluster_bootstrap_interval(correct, groups)
