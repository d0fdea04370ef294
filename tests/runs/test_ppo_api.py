"""PPO runs over the API: what the server checks before queueing, the job's config snapshot, a finished
run registering a policy version, and that version becoming the project's generation model."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import create_project
from tests.helpers import AT_CHANCE, assert_error, finish_training_job, registered_reward_model
from tests.labeling.conftest import seed_ready_prompts
from trainer.client import ClaimedJob
from trainer.ppo_config import PPOConfig
from trainer.ppo_job import ppo_config, truncation_notice


def test_bad_ppo_requests_are_422_and_queue_nothing(client, admin, make_account) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    url = f"/api/v1/projects/{project['id']}/train/ppo"
    reward_id = registered_reward_model(client, admin, worker, project["id"])
    before = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin.headers).json()["items"]

    # no prompts yet
    assert_error(client.post(url, json={"reward_model": reward_id}, headers=admin.headers), 422, "no_prompts")
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    for body, field, code in [
        ({}, "reward_model", "validation_failed"),
        ({"reward_model": 999}, "reward_model", "unknown_model"),
        ({"reward_model": reward_id, "policy": reward_id}, "policy", "unknown_model"),
        ({"reward_model": reward_id, "policy": "/some/where"}, "policy", "unknown_model"),
        ({"reward_model": reward_id, "batch_size": 8, "minibatch_size": 3}, "minibatch_size", None),
        ({"reward_model": reward_id, "steps": 0}, "steps", "validation_failed"),
        ({"reward_model": reward_id, "learning_rate": -1}, "learning_rate", "validation_failed"),
        ({"reward_model": reward_id, "kl_horizon": 0}, "kl_horizon", "validation_failed"),
        ({"reward_model": reward_id, "missing_eos_penalty": -1}, "missing_eos_penalty", "validation_failed"),
        ({"reward_model": reward_id, "surprise": 1}, "surprise", "validation_failed"),
    ]:
        error = assert_error(client.post(url, json=body, headers=admin.headers), 422, code)
        assert error["details"]["field"] == field, (body, error)
    # a policy used as a reward model
    policy_job = client.post(url, json={"reward_model": reward_id}, headers=admin.headers).json()["job_id"]
    policy_id = finish_training_job(client, worker, "ppo", policy_job)["model_id"]
    error = assert_error(client.post(url, json={"reward_model": policy_id}, headers=admin.headers), 422)
    assert error["details"]["field"] == "reward_model"
    after = client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin.headers).json()["items"]
    assert len(after) == len(before) + 1  # only the one good request queued a job


def test_only_admins_start_ppo_runs(client, admin, make_account) -> None:
    project = create_project(client, admin)
    url = f"/api/v1/projects/{project['id']}/train/ppo"
    for role in ("researcher", "labeler", "worker"):
        account = make_account(role)
        assert_error(client.post(url, json={"reward_model": 1}, headers=account.headers), 403)


def test_ppo_run_snapshots_its_config_and_registers_a_policy(client, admin, make_account) -> None:
    worker = make_account("worker")
    generation = {"model": "default", "temperature": 0.6, "top_p": 0.9, "max_new_tokens": 72}
    project = create_project(client, admin, generation=generation)
    seed_ready_prompts(client, admin, project["id"], n=10, k=4)
    reward_id = registered_reward_model(client, admin, worker, project["id"])
    body = {
        "reward_model": reward_id,
        "steps": 3,
        "batch_size": 4,
        "minibatch_size": 2,
        "eval_prompts": 3,
        "kl_horizon": 200,
    }
    job_id = client.post(
        f"/api/v1/projects/{project['id']}/train/ppo", json=body, headers=admin.headers
    ).json()["job_id"]

    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "test"}, headers=worker.headers
    ).json()
    config = claimed["config"]
    assert claimed["id"] == job_id and claimed["kind"] == "ppo"
    assert config["steps"] == 3 and config["policy"] == "default" and config["policy_artifact"] is None
    assert config["reward_model_artifact"] == f"reward/job-{_job_of(client, admin, reward_id)}"
    # the project's sampling settings, length included: the reward model scores what labelers judged
    assert config["temperature"] == 0.6 and config["top_p"] == 0.9 and config["max_new_tokens"] == 72
    assert config["missing_eos_penalty"] is None
    # the worker turns the snapshot into the trainer's config
    worker_side = SimpleNamespace(model_path=lambda path: Path("/artifacts") / path, cache_dir=Path("/cache"))
    job = ClaimedJob(id=job_id, kind="ppo", project_id=project["id"], config=config, attempt=1)
    trainer_config = ppo_config(worker_side, job)
    assert trainer_config.kl_horizon == 200 and trainer_config.batch_size == 4
    assert trainer_config.reward_model == f"/artifacts/{config['reward_model_artifact']}"
    assert trainer_config.temperature == 0.6 and trainer_config.policy == "default"
    assert trainer_config.max_new_tokens == 72 and trainer_config.missing_eos_penalty is None
    assert trainer_config.reward_label is None and trainer_config.reward_input == "chat"  # trained here
    assert trainer_config.min_kl_coef is None  # the default floor: kl_coef
    # a job queued when the penalty was the (negative) score substituted reads as its size
    legacy = ClaimedJob(
        id=job_id,
        kind="ppo",
        project_id=project["id"],
        config=config | {"missing_eos_penalty": -1.0},
        attempt=1,
    )
    assert ppo_config(worker_side, legacy).missing_eos_penalty == 1.0
    prompt_ids = [
        p["id"]
        for p in client.get(
            f"/api/v1/projects/{project['id']}/prompts", params={"limit": 100}, headers=admin.headers
        ).json()["items"]
    ]
    held_out = config["eval_prompt_ids"]
    assert len(held_out) == 3 and set(held_out) <= set(prompt_ids)

    # a sample report stays on its event: the job's (and the model's) figures keep only scalars
    sample = {"prompt": [{"role": "user", "content": "hi"}], "completion": "<b>hello</b>", "score": 0.5}
    for metrics in ({"step": 1, "reward/score": 0.1, "objective/kl": 0.0}, {"step": 1, "samples": [sample]}):
        event = {"attempt": claimed["attempts"], "metrics": metrics}
        assert (
            client.post(f"/api/v1/jobs/{job_id}/events", json=event, headers=worker.headers).status_code
            == 204
        )
    done = {
        "attempt": claimed["attempts"],
        "artifact": f"ppo/job-{job_id}",
        "metrics": {"eval/reward_before": -0.2, "eval/reward_after": 0.4, "eval/kl_after": 1.5},
    }
    finished = client.post(f"/api/v1/jobs/{job_id}/complete", json=done, headers=worker.headers).json()
    model = client.get(f"/api/v1/models/{finished['model_id']}", headers=admin.headers).json()
    assert model["kind"] == "policy" and model["base_model"] == "default" and model["job_id"] == job_id
    assert model["metrics"]["eval/reward_after"] == 0.4 and model["metrics"]["reward/score"] == 0.1
    assert "samples" not in model["metrics"]

    # the same seed holds out the same prompts; a run from the new policy records its lineage
    again = client.post(
        f"/api/v1/projects/{project['id']}/train/ppo",
        json={**body, "policy": model["id"]},
        headers=admin.headers,
    ).json()["job_id"]
    next_config = client.get(f"/api/v1/jobs/{again}", headers=admin.headers).json()["config"]
    assert next_config["eval_prompt_ids"] == held_out
    assert next_config["policy_artifact"] == f"ppo/job-{job_id}"
    assert next_config["base_model"] == f"model:{model['id']}"


def test_a_policy_version_becomes_the_generation_model(client, admin, make_account) -> None:
    worker = make_account("worker")
    project = create_project(client, admin, completions_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=4, k=2)
    reward_id = registered_reward_model(client, admin, worker, project["id"])
    job_id = client.post(
        f"/api/v1/projects/{project['id']}/train/ppo", json={"reward_model": reward_id}, headers=admin.headers
    ).json()["job_id"]
    policy_id = finish_training_job(client, worker, "ppo", job_id)["model_id"]

    url = f"/api/v1/projects/{project['id']}"
    error = assert_error(
        client.patch(url, json={"generation": {"model": reward_id}}, headers=admin.headers),
        422,
        "unknown_model",
    )
    assert error["details"]["field"] == "generation.model"
    patched = client.patch(url, json={"generation": {"model": policy_id}}, headers=admin.headers)
    assert patched.status_code == 200 and patched.json()["generation"]["model"] == policy_id

    # new prompts: the generate job carries the version and where it lives; completions record it
    prompts = b'{"prompt": "a new question"}\n'
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    assert client.post(f"{url}/prompts", content=prompts, headers=headers).status_code == 201
    queued = client.post(f"{url}/generate", headers=admin.headers).json()["job_id"]
    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": ["generate"], "worker": "test"}, headers=worker.headers
    ).json()
    assert claimed["id"] == queued
    assert claimed["config"]["model"] == f"model:{policy_id}"
    assert claimed["config"]["model_artifact"] == f"ppo/job-{job_id}"
    pending = client.get(f"{url}/prompts", params={"status": "pending"}, headers=worker.headers).json()[
        "items"
    ]
    items = [
        {
            "prompt_id": p["id"],
            "completions": [{"text": f"new {i}", "seed": i, "finished": True} for i in (1, 2)],
        }
        for p in pending
    ]
    stored = client.post(
        f"/api/v1/jobs/{queued}/completions",
        json={"attempt": claimed["attempts"], "items": items},
        headers=worker.headers,
    )
    assert stored.status_code == 200, stored.text
    listed = client.get(f"{url}/prompts", params={"limit": 100}, headers=admin.headers).json()["items"]
    (prompt,) = [p for p in listed if p["id"] == pending[0]["id"]]
    assert [c["model"] for c in prompt["completions"]] == [f"model:{policy_id}"] * 2


def _job_of(client, admin, model_id: int) -> int:
    return client.get(f"/api/v1/models/{model_id}", headers=admin.headers).json()["job_id"]


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (AT_CHANCE, "not better than chance (reaches 0.5)"),
        ({"accuracy/eval": 0.9}, "has no interval"),
        ({}, "has no held-out accuracy"),
    ],
)
def test_ppo_against_a_reward_model_not_shown_better_than_chance_needs_force(
    client, admin, make_account, metrics, reason
) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    reward_id = registered_reward_model(client, admin, worker, project["id"], metrics)
    url = f"/api/v1/projects/{project['id']}/train/ppo"
    jobs_url = f"/api/v1/projects/{project['id']}/jobs"
    before = client.get(jobs_url, headers=admin.headers).json()["items"]

    refused = client.post(url, json={"reward_model": reward_id}, headers=admin.headers)
    error = assert_error(refused, 409, "reward_model_at_chance")
    assert reason in error["message"] and '"force": true' in error["message"]
    assert error["details"]["field"] == "reward_model" and error["details"]["model_id"] == reward_id
    assert client.get(jobs_url, headers=admin.headers).json()["items"] == before, "nothing queued"

    forced = client.post(url, json={"reward_model": reward_id, "force": True}, headers=admin.headers)
    assert forced.status_code == 202, forced.text
    model = client.get(f"/api/v1/models/{reward_id}", headers=admin.headers).json()
    assert model["better_than_chance"] is False


def test_models_say_on_what_their_held_out_accuracy_was_measured(client, admin, make_account) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    learned = registered_reward_model(client, admin, worker, project["id"])
    chance = registered_reward_model(client, admin, worker, project["id"], AT_CHANCE)
    models = {m["id"]: m for m in client.get("/api/v1/models", headers=admin.headers).json()["items"]}
    assert models[learned]["better_than_chance"] is True
    assert models[learned]["held_out"] == "0.800 [0.70, 0.88] on 120 pairs of 20 held-out prompts"
    assert models[chance]["better_than_chance"] is False
    assert models[chance]["held_out"] == "0.550 [0.41, 0.68] on 120 pairs of 20 held-out prompts"


def test_the_run_page_says_when_the_reward_model_scores_cut_off_answers() -> None:
    config = PPOConfig(reward_model="rm", max_new_tokens=48)
    notice = truncation_notice({"step": 1, "reward/missing_eos": 1.0}, config)
    assert "100% of the first step's completions reached max_new_tokens (48)" in notice
    assert truncation_notice({"step": 1, "reward/missing_eos": 0.5}, config) is None


def test_a_ppo_run_may_mix_in_further_rewards(client, admin, make_account) -> None:
    from tests.helpers import AT_CHANCE, registered_reward_model
    from tests.labeling.conftest import seed_ready_prompts

    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    url = f"/api/v1/projects/{project['id']}/train/ppo"
    helpful = registered_reward_model(client, admin, worker, project["id"])
    safety = registered_reward_model(client, admin, worker, project["id"])
    weak = registered_reward_model(client, admin, worker, project["id"], metrics=AT_CHANCE)
    for extra, field, code in [
        ([{"model": helpful}], "extra_rewards.0.model", None),
        ([{"model": safety}, {"model": safety}], "extra_rewards.1.model", None),
        ([{"model": 987654}], "extra_rewards.0.model", "unknown_model"),
        ([{"model": safety, "weight": 1000}], "extra_rewards.0.weight", "validation_failed"),
    ]:
        body = {"reward_model": helpful, "extra_rewards": extra}
        error = assert_error(client.post(url, json=body, headers=admin.headers), 422, code)
        assert error["details"]["field"] == field, (extra, error)
    refused = client.post(
        url, json={"reward_model": helpful, "extra_rewards": [{"model": weak}]}, headers=admin.headers
    )
    assert_error(refused, 409, "reward_model_at_chance")
    body = {
        "reward_model": helpful,
        "reward_weight": 2.0,
        "extra_rewards": [{"model": safety, "weight": -0.5}],
    }
    assert client.post(url, json=body, headers=admin.headers).status_code == 202
    config = client.post(
        "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers
    ).json()["config"]
    assert config["reward_weight"] == 2.0 and config["reward_name"] == f"model {helpful}"
    (entry,) = config["extra_reward_entries"]
    assert entry == {
        "artifact": f"reward/job-{entry['artifact'].split('-')[-1]}",
        "name": f"model {safety}",
        "label": None,
        "reads": "chat",
        "weight": -0.5,
    }
