"""An evaluation round end to end: a real worker over HTTP generates with two real (tiny) policy
versions loaded from its artifact store, each prompt gets exactly one completion from each, labelers
rank them blind in the normal API, and the round reports the candidate's win rate."""

import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")

from tests.evaluations.conftest import parent_project, rank_round, register_policy
from tests.trainer.conftest import build_model, build_tokenizer
from trainer.client import ApiClient
from trainer.worker import Worker


def _save_policy(directory: Path, *, seed: int) -> None:
    tokenizer = build_tokenizer()
    build_model(tokenizer, seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def test_round_generates_one_completion_per_model_and_scores_blind_rankings(
    client, admin, make_account, session_factory, live_server, tmp_path
) -> None:
    data_dir = tmp_path / "worker-data"
    _save_policy(data_dir / "artifacts" / "ppo" / "job-1", seed=1)
    _save_policy(data_dir / "artifacts" / "ppo" / "job-2", seed=2)
    parent = parent_project(client, admin, n=6)
    client.patch(
        f"/api/v1/projects/{parent['id']}",
        json={"generation": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 10}},
        headers=admin.headers,
    )
    held_out = [
        p["id"]
        for p in client.get(f"/api/v1/projects/{parent['id']}/prompts", headers=admin.headers).json()["items"]
    ][:4]
    start = register_policy(session_factory, project_id=parent["id"], artifact="ppo/job-1")
    candidate = register_policy(
        session_factory,
        project_id=parent["id"],
        artifact="ppo/job-2",
        starting_policy=start,
        eval_prompt_ids=held_out,
    )
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "rankings_per_prompt": 1},
        headers=admin.headers,
    ).json()
    assert round_["prompts"] == 4 and round_["baseline"] == f"model:{start}"

    worker = Worker(
        ApiClient(live_server, make_account("worker").token),
        name="e2e",
        kinds=["generate"],
        data_dir=data_dir,
        poll_seconds=0.1,
    )
    worker.run(once=True)

    job = client.get(f"/api/v1/jobs/{round_['job_id']}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["generate/completions"] == 8
    prompts = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
    ).json()["items"]
    assert len(prompts) == 4
    for prompt in prompts:
        assert prompt["status"] == "ready"
        writers = sorted(c["model"] for c in prompt["completions"])
        assert writers == sorted([f"model:{candidate}", f"model:{start}"]), "exactly one from each model"
        assert all(c["origin"] == "generated" and isinstance(c["seed"], int) for c in prompt["completions"])

    labeler = make_account("labeler")
    tasks = rank_round(client, admin, labeler, round_, lambda i: ["win", "win", "tie", "loss"][i])
    assert len(tasks) == 4
    for task in tasks:
        assert len(task["completions"]) == 2 and "model" not in json.dumps(task)
    result = client.get(f"/api/v1/evaluations/{round_['id']}", headers=admin.headers).json()
    assert result["status"] == "complete"
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert result["win_rate"] == pytest.approx(0.625)
    assert 0 < result["ci_low"] < 0.625 < result["ci_high"] < 1
