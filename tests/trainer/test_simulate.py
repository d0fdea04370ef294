"""Simulated labelers (`preflab simulate`): their rankings follow the scorer exactly at noise 0, follow
Bradley-Terry odds under noise, and reach the server through the real labeling API."""

import json
import math
import random

import pytest
from sqlalchemy import select

from app.labeling.models import Ranking
from app.prompts.models import Completion
from tests.conftest import create_project
from trainer.simulate import main, rank


def longer_is_better(prompt_messages, completion_text: str) -> float:
    """A stated synthetic preference for the tests: more characters is better."""
    assert prompt_messages[-1]["role"] == "user"
    return float(len(completion_text))


def test_noise_zero_ranks_by_score_and_ties_within_the_margin() -> None:
    rng = random.Random(0)
    assert rank([0.2, 3.0, -1.0, 1.5], noise=0, tie_margin=0, rng=rng) == [[1], [3], [0], [2]]
    assert rank([1.0, 1.05, 3.0, -2.0], noise=0, tie_margin=0.1, rng=rng) == [[2], [1, 0], [3]]


def test_noise_follows_bradley_terry_odds() -> None:
    rng = random.Random(1)
    draws = 6000
    for noise, gap in [(1.0, 1.0), (0.5, 1.0), (2.0, 0.5)]:
        wins = sum(rank([gap, 0.0], noise=noise, tie_margin=0, rng=rng)[0] == [0] for _ in range(draws))
        expected = 1 / (1 + math.exp(-gap / noise))  # sigmoid(gap / noise)
        assert abs(wins / draws - expected) < 0.025, (noise, gap, wins / draws, expected)
    # three items: Plackett-Luce's first place is the softmax of score / noise
    firsts = [rank([2.0, 1.0, 0.0], noise=1.0, tie_margin=0, rng=rng)[0][0] for _ in range(draws)]
    softmax = [math.exp(s) / sum(math.exp(t) for t in (2.0, 1.0, 0.0)) for s in (2.0, 1.0, 0.0)]
    for index, share in enumerate(softmax):
        assert abs(firsts.count(index) / draws - share) < 0.025


def test_simulated_labelers_rank_every_task_through_the_api(client, admin, live_server, db) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=2)
    body = "".join(
        json.dumps({"prompt": f"question {i}", "completions": ["a" * (i + 1), "b" * (i + 5), "c" * (i + 9)]})
        + "\n"
        for i in range(6)
    )
    uploaded = client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert uploaded.status_code == 201, uploaded.text
    args = ["--server", live_server, "--token", admin.token, "--project", str(project["id"])]
    args += ["--scorer", "tests.trainer.test_simulate:longer_is_better", "--labelers", "3", "--noise", "0"]
    assert main([*args, "--fast-labelers", "1"]) == 0

    rankings = db.scalars(select(Ranking)).all()
    assert len(rankings) == 6 * 2, "every prompt ranked by two different labelers"
    careful = [r for r in rankings if r.seconds_spent != pytest.approx(0.3)]
    fast = [r for r in rankings if r.seconds_spent == pytest.approx(0.3)]
    assert careful and fast
    texts = dict(db.execute(select(Completion.id, Completion.text)).all())
    for ranking in careful:  # noise 0: longest first, exactly
        lengths = [len(texts[tier[0]]) for tier in ranking.tiers]
        assert lengths == sorted(lengths, reverse=True), ranking.tiers
    assert len({r.labeler_id for r in rankings}) == 3
