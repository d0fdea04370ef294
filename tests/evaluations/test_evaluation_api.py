"""Evaluation rounds over the API: validation, the child project, the two-model generation protocol,
blind labeling and the win rate on a hand-worked example."""

import json

import pytest
from sqlalchemy import func, select

from app.evaluations.models import EvaluationRound
from app.jobs.models import Job
from app.projects.models import Project
from app.prompts.models import Prompt
from tests.evaluations.conftest import claim, parent_project, post_completions, rank_round, register_policy
from tests.helpers import assert_error


def _counts(db) -> tuple[int, int, int, int]:
    db.expire_all()
    return (
        db.scalar(select(func.count(Project.id))),
        db.scalar(select(func.count(Prompt.id))),
        db.scalar(select(func.count(Job.id))),
        db.scalar(select(func.count(EvaluationRound.id))),
    )


def _generate(client, make_account, round_: dict, *, text: str = "answer") -> None:
    """Play the worker: one completion per model for every prompt of the round."""
    worker = make_account("worker")
    job = claim(client, worker)
    assert job["id"] == round_["job_id"]
    prompts = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=worker.headers
    ).json()["items"]
    items = [
        {
            "prompt_id": p["id"],
            "completions": [
                {"text": f"{text} {p['id']}.{n}", "seed": n, "model": spec}
                for n, spec in enumerate((round_["candidate"], round_["baseline"]))
            ],
        }
        for p in prompts
    ]
    result = post_completions(client, worker, job, items).json()
    assert result["added"] == 2 * len(prompts) and result["prompts_remaining"] == 0
    done = client.post(
        f"/api/v1/jobs/{job['id']}/complete", json={"attempt": job["attempts"]}, headers=worker.headers
    )
    assert done.status_code == 200, done.text


def test_create_round_copies_held_out_prompts_and_queues_two_model_generation(
    client, admin, session_factory, db
) -> None:
    parent = parent_project(client, admin, n=8)
    prompt_ids = [
        p["id"]
        for p in client.get(f"/api/v1/projects/{parent['id']}/prompts", headers=admin.headers).json()["items"]
    ]
    start = register_policy(session_factory, project_id=parent["id"], artifact="ppo/job-1")
    candidate = register_policy(
        session_factory,
        project_id=parent["id"],
        artifact="ppo/job-2",
        starting_policy=start,
        eval_prompt_ids=[*prompt_ids[2:5], 999_999],  # an id that is not the project's is left out
    )

    response = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "rankings_per_prompt": 1},
        headers=admin.headers,
    )
    assert response.status_code == 202, response.text
    round_ = response.json()
    assert round_["number"] == 1 and round_["project_id"] == parent["id"]
    assert round_["candidate"] == f"model:{candidate}" and round_["candidate_model_id"] == candidate
    assert round_["baseline"] == f"model:{start}", "the default baseline is the candidate's starting policy"
    assert round_["prompts"] == 3 and round_["prompt_source"] == "held_out"
    assert round_["status"] == "generating" and round_["rankings"] == 0 and round_["rankings_target"] == 3
    assert round_["win_rate"] is None and round_["ci_low"] is None and round_["created_by"] == admin.username
    assert round_["round_project_name"] == "helpfulness-v1 — evaluation 1"

    child = client.get(f"/api/v1/projects/{round_['round_project_id']}", headers=admin.headers).json()
    assert child["completions_per_prompt"] == 2 and child["rankings_per_prompt"] == 1
    assert child["instructions_md"] == "# Prefer brevity" and child["flags"] == parent["flags"]
    assert child["counts"] == {"prompts": 3, "completions": 0, "prompts_ready": 0}
    copied = client.get(f"/api/v1/projects/{child['id']}/prompts", headers=admin.headers).json()["items"]
    originals = {
        p["id"]: p
        for p in client.get(f"/api/v1/projects/{parent['id']}/prompts", headers=admin.headers).json()["items"]
    }
    assert sorted(p["metadata"]["evaluated_prompt_id"] for p in copied) == prompt_ids[2:5]
    for prompt in copied:
        assert prompt["messages"] == originals[prompt["metadata"]["evaluated_prompt_id"]]["messages"]
        assert prompt["completions"] == []

    job = client.get(f"/api/v1/jobs/{round_['job_id']}", headers=admin.headers).json()
    assert job["kind"] == "generate" and job["project_id"] == child["id"] and job["config"]["k"] == 2
    assert job["config"]["models"] == [
        {"model": f"model:{candidate}", "model_artifact": "ppo/job-2"},
        {"model": f"model:{start}", "model_artifact": "ppo/job-1"},
    ]
    assert "model" not in job["config"]["generation"]

    second = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "baseline": "default", "prompts": 2},
        headers=admin.headers,
    ).json()
    assert second["number"] == 2 and second["baseline"] == "default" and second["prompts"] == 2
    assert second["rankings_per_prompt"] == parent["rankings_per_prompt"]
    listed = client.get(f"/api/v1/projects/{parent['id']}/evaluations", headers=admin.headers).json()
    assert [r["number"] for r in listed["items"]] == [2, 1]


def test_without_held_out_prompts_a_seeded_sample_of_labelable_prompts(
    client, admin, session_factory, db
) -> None:
    parent = parent_project(client, admin, n=10)
    db.add(
        Prompt(project_id=parent["id"], messages=[{"role": "user", "content": "imported"}], source="import:x")
    )
    db.commit()
    labelable = {
        p["id"]
        for p in client.get(f"/api/v1/projects/{parent['id']}/prompts", headers=admin.headers).json()["items"]
        if p["status"] != "imported"
    }
    candidate = register_policy(
        session_factory, project_id=None, artifact="ppo/job-3"
    )  # no run: base "default"
    chosen = []
    for _ in range(2):
        round_ = client.post(
            f"/api/v1/projects/{parent['id']}/evaluations",
            json={"candidate": candidate, "prompts": 4, "seed": 7},
            headers=admin.headers,
        ).json()
        assert (
            round_["prompt_source"] == "sample" and round_["prompts"] == 4 and round_["baseline"] == "default"
        )
        copied = client.get(
            f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
        ).json()
        chosen.append(sorted(p["metadata"]["evaluated_prompt_id"] for p in copied["items"]))
    assert chosen[0] == chosen[1], "the same seed draws the same prompts"
    assert set(chosen[0]) <= labelable

    everything = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "prompts": 500},
        headers=admin.headers,
    ).json()
    assert everything["prompts"] == len(labelable), "the imported prompt is never evaluated on"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"candidate": 424242}, "candidate"),
        ({"candidate": "REWARD"}, "candidate"),
        ({"candidate": "CANDIDATE", "baseline": 424242}, "baseline"),
        ({"candidate": "CANDIDATE", "baseline": "REWARD"}, "baseline"),
        ({"candidate": "CANDIDATE", "baseline": "/no/such/model"}, "baseline"),
        ({"candidate": "CANDIDATE", "baseline": "CANDIDATE"}, "baseline"),
        ({"candidate": "CANDIDATE", "prompts": 0}, "prompts"),
        ({"candidate": "CANDIDATE", "rankings_per_prompt": 0}, "rankings_per_prompt"),
        ({"candidate": "CANDIDATE", "surprise": 1}, "surprise"),
        ({}, "candidate"),
    ],
)
def test_bad_requests_are_422_and_write_nothing(client, admin, session_factory, db, body, field) -> None:
    parent = parent_project(client, admin, n=3)
    ids = {
        "CANDIDATE": register_policy(session_factory, project_id=parent["id"], artifact="ppo/a"),
        "REWARD": register_policy(
            session_factory, project_id=parent["id"], artifact="reward/b", kind="reward"
        ),
    }
    body = {key: ids.get(value, value) if isinstance(value, str) else value for key, value in body.items()}
    before = _counts(db)
    response = client.post(f"/api/v1/projects/{parent['id']}/evaluations", json=body, headers=admin.headers)
    error = assert_error(response, 422)
    assert error["details"]["field"] == field
    assert _counts(db) == before


def test_roles_and_unknown_ids(client, admin, make_account, session_factory, db) -> None:
    parent = parent_project(client, admin, n=3)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    url = f"/api/v1/projects/{parent['id']}/evaluations"
    before = _counts(db)
    for role in ("researcher", "labeler", "worker"):
        assert_error(client.post(url, json={"candidate": candidate}, headers=make_account(role).headers), 403)
    assert_error(client.post(url, json={"candidate": candidate}), 401)
    assert _counts(db) == before
    assert_error(
        client.post("/api/v1/projects/999/evaluations", json={"candidate": candidate}, headers=admin.headers),
        404,
    )

    round_ = client.post(url, json={"candidate": candidate}, headers=admin.headers).json()
    researcher = make_account("researcher")
    assert client.get(url, headers=researcher.headers).json()["items"][0]["id"] == round_["id"]
    assert (
        client.get(f"/api/v1/evaluations/{round_['id']}", headers=researcher.headers).json()["id"]
        == round_["id"]
    )
    assert_error(
        client.get(f"/api/v1/evaluations/{round_['id']}", headers=make_account("labeler").headers), 403
    )
    assert_error(client.get("/api/v1/evaluations/999", headers=admin.headers), 404, "evaluation_not_found")
    # A round is not itself evaluated.
    nested = client.post(
        f"/api/v1/projects/{round_['round_project_id']}/evaluations",
        json={"candidate": candidate},
        headers=admin.headers,
    )
    assert_error(nested, 422, "evaluation_of_evaluation")


def test_two_model_completions_are_checked(client, admin, make_account, session_factory) -> None:
    parent = parent_project(client, admin, n=2)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations", json={"candidate": candidate}, headers=admin.headers
    ).json()
    worker = make_account("worker")
    job = claim(client, worker)
    prompts = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
    ).json()["items"]
    first = prompts[0]["id"]

    unnamed = [{"prompt_id": first, "completions": [{"text": "a"}]}]
    assert_error(post_completions(client, worker, job, unnamed), 422, "unknown_completion_model")
    stranger = [{"prompt_id": first, "completions": [{"text": "a", "model": "model:999"}]}]
    assert_error(post_completions(client, worker, job, stranger), 422, "unknown_completion_model")

    twice = [
        {
            "prompt_id": first,
            "completions": [
                {"text": "one", "model": round_["candidate"]},
                {"text": "two", "model": round_["candidate"]},
            ],
        }
    ]
    result = post_completions(client, worker, job, twice).json()
    assert result["added"] == 1 and result["surplus"] == 1, "one completion per model and prompt"
    again = [{"prompt_id": first, "completions": [{"text": "three", "model": round_["candidate"]}]}]
    assert post_completions(client, worker, job, again).json()["surplus"] == 1
    url = f"/api/v1/projects/{round_['round_project_id']}/prompts"
    (kept,) = client.get(url, headers=admin.headers).json()["items"][0]["completions"]
    assert kept["text"] in ("one", "two") and kept["model"] == round_["candidate"]
    twin = [{"prompt_id": first, "completions": [{"text": kept["text"], "model": round_["baseline"]}]}]
    assert post_completions(client, worker, job, twin).json()["duplicates"] == 1
    other = [{"prompt_id": first, "completions": [{"text": "four", "model": round_["baseline"]}]}]
    assert post_completions(client, worker, job, other).json()["added"] == 1
    stored = client.get(url, headers=admin.headers).json()["items"]
    assert sorted((c["model"], c["text"]) for c in stored[0]["completions"]) == sorted(
        [(round_["baseline"], "four"), (round_["candidate"], kept["text"])]
    )


def test_a_one_model_job_cannot_fill_a_round(client, admin, make_account, session_factory) -> None:
    parent = parent_project(client, admin, n=2)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations", json={"candidate": candidate}, headers=admin.headers
    ).json()
    client.post(f"/api/v1/jobs/{round_['job_id']}/cancel", headers=admin.headers)
    plain = client.post(
        f"/api/v1/projects/{round_['round_project_id']}/generate", headers=admin.headers
    ).json()
    worker = make_account("worker")
    job = claim(client, worker)
    assert job["id"] == plain["job_id"] and "models" not in job["config"]
    prompt = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
    ).json()["items"][0]
    refused = post_completions(
        client, worker, job, [{"prompt_id": prompt["id"], "completions": [{"text": "x"}]}]
    )
    assert_error(refused, 409, "evaluation_round_generation")
    failed = {"attempt": job["attempts"], "error": refused.json()["error"]["message"]}
    client.post(f"/api/v1/jobs/{job['id']}/fail", json=failed, headers=worker.headers)
    assert (
        client.get(f"/api/v1/evaluations/{round_['id']}", headers=admin.headers).json()["status"]
        == "generation_failed"
    )

    # The round's own action queues its two-model job again (cancelling a one-model job still queued).
    stray = client.post(f"/api/v1/projects/{round_['round_project_id']}/generate", headers=admin.headers)
    again = client.post(f"/api/v1/evaluations/{round_['id']}/generate", headers=admin.headers)
    assert again.status_code == 202
    stray_job = client.get(f"/api/v1/jobs/{stray.json()['job_id']}", headers=admin.headers).json()
    assert stray_job["status"] == "cancelled"
    queued = client.get(f"/api/v1/jobs/{again.json()['job_id']}", headers=admin.headers).json()
    assert len(queued["config"]["models"]) == 2
    assert (
        client.get(f"/api/v1/evaluations/{round_['id']}", headers=admin.headers).json()["job_id"]
        == queued["id"]
    )
    assert_error(
        client.post(
            f"/api/v1/evaluations/{round_['id']}/generate", headers=make_account("researcher").headers
        ),
        403,
    )


def test_win_rate_on_a_hand_worked_example(client, admin, make_account, session_factory) -> None:
    """3 wins, 1 tie, 1 loss on 5 prompts, one ranking each: win rate (3 + 0.5) / 5 = 0.7; Wilson 95%
    interval with n = 5, z = 1.96: centre (0.7 + z²/10) / (1 + z²/5) = 0.6131, half-width
    z·sqrt(0.7·0.3/5 + z²/100) / (1 + z²/5) = 0.3143, so [0.2988, 0.9274]."""
    parent = parent_project(client, admin, n=5)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "rankings_per_prompt": 1},
        headers=admin.headers,
    ).json()
    _generate(client, make_account, round_)
    assert (
        client.get(f"/api/v1/evaluations/{round_['id']}", headers=admin.headers).json()["status"]
        == "labeling"
    )

    labeler = make_account("labeler")
    verdicts = ["win", "win", "tie", "loss", "win"]
    tasks = rank_round(client, admin, labeler, round_, lambda i: verdicts[i])
    assert len(tasks) == 5
    for task in tasks:  # blind: ids and texts only, nothing that names a model
        assert all(set(c) == {"id", "text"} for c in task["completions"])
        assert "model" not in json.dumps(task)

    result = client.get(
        f"/api/v1/evaluations/{round_['id']}", headers=make_account("researcher").headers
    ).json()
    assert (result["wins"], result["ties"], result["losses"]) == (3, 1, 1)
    assert result["status"] == "complete" and result["rankings"] == 5 and result["prompts_scored"] == 5
    assert result["win_rate"] == pytest.approx(0.7)
    assert result["ci_low"] == pytest.approx(0.2988, abs=1e-4)
    assert result["ci_high"] == pytest.approx(0.9274, abs=1e-4)
    assert result["flags"] == {"candidate": {}, "baseline": {"unsafe": 3}}


def test_several_rankings_of_a_prompt_count_once(client, admin, make_account, session_factory) -> None:
    """Two prompts, two labelers each: prompt A win + tie (0.75), prompt B loss + loss (0): the win rate is
    the mean over prompts, (0.75 + 0) / 2 = 0.375, and the interval's n is 2 prompts, not 4 rankings."""
    parent = parent_project(client, admin, n=2)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations",
        json={"candidate": candidate, "rankings_per_prompt": 2},
        headers=admin.headers,
    ).json()
    _generate(client, make_account, round_)
    rank_round(client, admin, make_account("labeler"), round_, lambda i: ["win", "loss"][i])
    rank_round(client, admin, make_account("labeler"), round_, lambda i: ["tie", "loss"][i])
    result = client.get(f"/api/v1/evaluations/{round_['id']}", headers=admin.headers).json()
    assert (result["wins"], result["ties"], result["losses"]) == (1, 1, 2)
    assert result["prompts_scored"] == 2 and result["win_rate"] == pytest.approx(0.375)
    from app.evaluations.service import wilson_interval

    assert (result["ci_low"], result["ci_high"]) == pytest.approx(wilson_interval(0.375, 2))
