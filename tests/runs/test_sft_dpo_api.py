"""SFT and DPO runs over the API and from their cards: what is refused (422, nothing queued), what the
queued config holds (the request's defaults, the starting policy, the held-out prompts), and that a
card sent as shown queues the API's defaults."""

import json

import pytest

from app.runs.dpo.schemas import DPOTrainRequest
from app.runs.sft.schemas import SFTTrainRequest
from tests.conftest import browser_login, create_project
from tests.helpers import assert_error, registered_reward_model
from tests.labeling.test_labeling_api import next_task, rank
from tests.runs.test_training_cards import _card_inputs


def jobs_of(client, admin, project_id: int) -> list[dict]:
    return client.get(f"/api/v1/projects/{project_id}/jobs", headers=admin.headers).json()["items"]


def claim(client, worker, kind: str) -> dict:
    return client.post(
        "/api/v1/worker/claim", json={"kinds": [kind], "worker": "w"}, headers=worker.headers
    ).json()


@pytest.fixture
def ranked_project(client, admin, make_account) -> dict:
    """Six prompts, each ranked once (K=2)."""
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    body = "".join(
        json.dumps({"prompt": f"q{i}", "completions": [f"a{i}", f"b{i}"]}) + "\n" for i in range(6)
    )
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    client.post(f"/api/v1/projects/{project['id']}/prompts", content=body.encode(), headers=headers)
    labeler = make_account("labeler")
    while task := next_task(client, labeler, project):
        assert rank(client, labeler, task).status_code == 201
    return project


@pytest.fixture
def demonstrated_project(client, admin, make_account) -> dict:
    """Five prompts with a written answer each."""
    project = create_project(client, admin, name="answers", task="demonstrate", rankings_per_prompt=1)
    body = "".join(json.dumps({"prompt": f"q{i}"}) + "\n" for i in range(5))
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    client.post(f"/api/v1/projects/{project['id']}/prompts", content=body.encode(), headers=headers)
    labeler = make_account("labeler")
    while task := next_task(client, labeler, project):
        url = f"/api/v1/assignments/{task['assignment_id']}/demonstration"
        assert client.post(url, json={"text": "an answer"}, headers=labeler.headers).status_code == 201
    return project


def test_bad_dpo_requests_are_422_and_queue_nothing(client, admin, make_account, ranked_project) -> None:
    pid = ranked_project["id"]
    reward_id = registered_reward_model(client, admin, make_account("worker"), pid)
    before = jobs_of(client, admin, pid)
    for body, field, code in [
        ({"policy": "/some/where"}, "policy", "unknown_model"),
        ({"policy": reward_id}, "policy", "unknown_model"),
        ({"policy": 987654}, "policy", "unknown_model"),
        ({"beta": 0}, "beta", "validation_failed"),
        ({"loss_type": "hinge"}, "loss_type", "validation_failed"),
        ({"label_smoothing": 0.5}, "label_smoothing", "validation_failed"),
        ({"filters": {"exclude_flags": ["no_such_flag"]}}, "exclude_flags", None),
        ({"surprise": 1}, "surprise", "validation_failed"),
    ]:
        error = assert_error(
            client.post(f"/api/v1/projects/{pid}/train/dpo", json=body, headers=admin.headers), 422, code
        )
        assert error["details"]["field"].endswith(field), (body, error)
    assert jobs_of(client, admin, pid) == before


SMALL_RUN = {"eval_fraction": 0.34, "seed": 3, "force": True}  # forced: a tiny project on purpose


def test_a_dpo_run_snapshots_its_config_and_held_out_prompts(client, admin, make_account, ranked_project):
    pid = ranked_project["id"]
    queued = client.post(f"/api/v1/projects/{pid}/train/dpo", json=SMALL_RUN, headers=admin.headers)
    assert queued.status_code == 202, queued.text
    config = claim(client, make_account("worker"), "dpo")["config"]
    api = DPOTrainRequest(eval_fraction=0.34, seed=3, force=True).model_dump(mode="json")
    assert {k: config[k] for k in api if k != "max_new_tokens"} == {
        k: v for k, v in api.items() if k != "max_new_tokens"
    }
    assert config["max_new_tokens"] == 64, "null: the project's length"
    assert config["policy_artifact"] is None and config["base_model"] == "default"
    assert len(config["eval_prompt_ids"]) == 2
    again = client.post(f"/api/v1/projects/{pid}/train/dpo", json=SMALL_RUN, headers=admin.headers)
    assert (
        claim(client, make_account("worker"), "dpo")["config"]["eval_prompt_ids"] == config["eval_prompt_ids"]
    )
    assert again.status_code == 202


def test_an_sft_run_needs_demonstrations_and_snapshots_its_config(
    client, admin, make_account, ranked_project, demonstrated_project
) -> None:
    assert_error(
        client.post(f"/api/v1/projects/{ranked_project['id']}/train/sft", json={}, headers=admin.headers),
        422,
        "no_demonstrations",
    )
    pid = demonstrated_project["id"]
    assert_error(
        client.post(f"/api/v1/projects/{pid}/train/sft", json={"base_model": "x"}, headers=admin.headers),
        422,
        "unknown_model",
    )
    assert_error(
        client.post(
            f"/api/v1/projects/{pid}/train/sft",
            json={"filters": {"labelers": ["l-nobody"]}},
            headers=admin.headers,
        ),
        422,
    )
    queued = client.post(
        f"/api/v1/projects/{pid}/train/sft", json={"eval_fraction": 0.2}, headers=admin.headers
    )
    assert queued.status_code == 202, queued.text
    config = claim(client, make_account("worker"), "sft")["config"]
    assert config["epochs"] == SFTTrainRequest().epochs and config["eval_fraction"] == 0.2
    assert len(config["eval_prompt_ids"]) == 1 and config["base_model"] == "default"


def test_the_cards_send_the_api_defaults_and_keep_a_refused_input(
    client, admin, make_account, ranked_project, demonstrated_project
) -> None:
    csrf = browser_login(client, admin)
    worker = make_account("worker")
    for project, kind, schema in (
        (demonstrated_project, "sft", SFTTrainRequest),
        (ranked_project, "dpo", DPOTrainRequest),
    ):
        action = f"/projects/{project['id']}/train/{kind}"
        page = client.get(f"/projects/{project['id']}").text
        shown = {k: v for k, v in _card_inputs(page, action).items() if k != "min_agreement"}
        for name, value in shown.items():
            assert type(schema.model_fields[name].default)(value) == schema.model_fields[name].default, name
        forced = {"force": "true"} if kind == "dpo" else {}  # a tiny project: the gate is tested elsewhere
        started = client.post(action, data={"csrf_token": csrf, **shown, **forced}, follow_redirects=False)
        assert started.status_code == 303, started.text
        config = claim(client, worker, kind)["config"]
        api = schema().model_dump(mode="json")
        assert all(config[name] == api[name] for name in shown), kind
        refused = client.post(action, data={"csrf_token": csrf, **shown, "learning_rate": "-1"})
        assert refused.status_code == 422 and f'id="{kind}-error"' in refused.text
        assert 'value="-1"' in refused.text
