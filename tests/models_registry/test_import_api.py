"""Models brought from outside (POST /models/import): only from directories the admin allowed, only of
the kind asked for, a classifier's reward label resolved; usable wherever a trained version is."""

import json
from pathlib import Path

import pytest

from tests.conftest import create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts


def model_dir(root: Path, name: str, architecture: str, *, labels: list[str] | None = None, tokenizer=True):
    """A directory that looks like a saved Hugging Face model to the server (which never loads weights)."""
    directory = root / name
    directory.mkdir(parents=True)
    config: dict = {"architectures": [architecture], "model_type": "bert"}
    if labels is not None:
        config |= {"id2label": dict(enumerate(labels)), "num_labels": len(labels)}
    (directory / "config.json").write_text(json.dumps(config))
    if tokenizer:
        (directory / "tokenizer.json").write_text("{}")
    return directory


def import_(client, admin, **body):
    return client.post("/api/v1/models/import", json=body, headers=admin.headers)


def test_a_causal_lm_becomes_a_policy_the_project_can_generate_with(client, admin, tmp_path) -> None:
    directory = model_dir(tmp_path, "tuned-elsewhere", "LlamaForCausalLM")
    response = import_(client, admin, kind="policy", path=str(directory))
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["origin"] == "imported" and version["name"] == "tuned-elsewhere"
    assert version["artifact"] == str(directory.resolve()) and version["better_than_chance"] is None
    assert_error(import_(client, admin, kind="policy", path=str(directory)), 409, "model_already_imported")

    project = create_project(client, admin, generation={"model": version["id"]})
    queued = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers).json()
    job = client.get(f"/api/v1/jobs/{queued['job_id']}", headers=admin.headers).json()
    assert job["config"]["model"] == f"model:{version['id']}"
    assert job["config"]["model_artifact"] == str(directory.resolve())


def test_only_directories_the_admin_allowed(client, admin, tmp_path, settings) -> None:
    allowed_root = settings.allowed_model_dirs[0]
    outside = Path("/etc")  # exists, and is not allowed: the answer must not say whether it exists
    for path in (outside, outside / "nowhere", allowed_root / ".." / ".." / "etc", "~nobody-at-all/model"):
        error = assert_error(
            import_(client, admin, kind="policy", path=str(path)), 422, "model_dir_not_allowed"
        )
        assert error["details"]["field"] == "path" and "PREFLAB_MODEL_DIRS" in error["message"]
    assert_error(import_(client, admin, kind="policy", path=str(tmp_path / "nothing")), 422, "unknown_model")
    assert_error(
        import_(client, admin, kind="policy", path=str(tmp_path / ("x" * 300))), 422, "unknown_model"
    )
    untokenized = model_dir(tmp_path, "bare", "LlamaForCausalLM", tokenizer=False)
    assert_error(import_(client, admin, kind="policy", path=str(untokenized)), 422, "unknown_model")
    # the same rule for a project's generation model and a reward backbone given as a path
    body = {"name": "p", "generation": {"model": "/etc"}}
    assert_error(
        client.post("/api/v1/projects", json=body, headers=admin.headers), 422, "model_dir_not_allowed"
    )
    project = create_project(client, admin)
    url = f"/api/v1/projects/{project['id']}/train/reward"
    assert_error(
        client.post(url, json={"base_model": "/etc"}, headers=admin.headers), 422, "model_dir_not_allowed"
    )
    assert client.get("/api/v1/models", headers=admin.headers).json()["items"] == []


def test_the_kind_must_match_the_architecture(client, admin, tmp_path) -> None:
    classifier = model_dir(tmp_path, "clf", "RobertaForSequenceClassification", labels=["nothate", "hate"])
    causal = model_dir(tmp_path, "lm", "GPT2LMHeadModel")
    error = assert_error(import_(client, admin, kind="policy", path=str(classifier)), 422, "wrong_model_kind")
    assert "RobertaForSequenceClassification" in error["message"]
    assert_error(import_(client, admin, kind="reward", path=str(causal)), 422, "wrong_model_kind")
    assert import_(client, admin, kind="policy", path=str(causal)).status_code == 201  # GPT-2's head


@pytest.mark.parametrize(
    ("labels", "asked", "status", "index"),
    [
        (["nothate", "hate"], "NOTHATE", 201, 0),  # a label's name, any case
        (["nothate", "hate"], 1, 201, 1),
        (["nothate", "hate"], None, 422, None),  # several outputs: which one is the reward?
        (["nothate", "hate"], 2, 422, None),
        (["nothate", "hate"], "toxic", 422, None),
        (["score"], None, 201, None),  # one output: its logit
        (["score"], 0, 422, None),
    ],
)
def test_a_classifier_reward_label(client, admin, tmp_path, labels, asked, status, index) -> None:
    directory = model_dir(tmp_path, "clf", "BertForSequenceClassification", labels=labels)
    response = import_(client, admin, kind="reward", path=str(directory), reward_label=asked)
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["reward_label"] == index
    else:
        assert response.json()["error"]["details"]["field"] == "reward_label"


def test_ppo_takes_an_imported_classifier_without_force(client, admin, tmp_path) -> None:
    """An imported classifier was never measured on the project's preferences: the at-chance gate is for
    reward models trained here. The job's config says which output is the reward and what it reads."""
    directory = model_dir(tmp_path, "clf", "RobertaForSequenceClassification", labels=["nothate", "hate"])
    reward = import_(client, admin, kind="reward", path=str(directory), reward_label="nothate").json()
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=4, k=4)
    url = f"/api/v1/projects/{project['id']}/train/ppo"
    queued = client.post(url, json={"reward_model": reward["id"]}, headers=admin.headers)
    assert queued.status_code == 202, queued.text
    config = client.get(f"/api/v1/jobs/{queued.json()['job_id']}", headers=admin.headers).json()["config"]
    assert config["reward_model_artifact"] == str(directory.resolve())
    assert config["reward_label"] == 0 and config["reward_input"] == "completion"
    assert config["reward_model_at_chance"] is None
    # the worker reads it from the path it was registered from, and scores that label on the completion
    from types import SimpleNamespace

    from trainer.client import ClaimedJob
    from trainer.ppo_job import ppo_config
    from trainer.worker import Worker

    worker_side = SimpleNamespace(
        model_path=lambda artifact: Worker.model_path(
            SimpleNamespace(artifact_dir=tmp_path / "store"), artifact
        ),
        cache_dir=tmp_path / "cache",
    )
    job = ClaimedJob(id=1, kind="ppo", project_id=project["id"], config=config, attempt=1)
    trainer_config = ppo_config(worker_side, job)
    assert trainer_config.reward_model == str(directory.resolve())
    assert trainer_config.reward_label == 0 and trainer_config.reward_input == "completion"


def test_the_models_page_registers_a_model_and_keeps_a_refused_form(client, admin, tmp_path) -> None:
    from tests.conftest import browser_login

    csrf = browser_login(client, admin)
    page = client.get("/models").text
    assert "Register a model from outside" in page and "PREFLAB_MODEL_DIRS" in page
    classifier = model_dir(tmp_path, "detox", "RobertaForSequenceClassification", labels=["nothate", "hate"])
    form = {"csrf_token": csrf, "kind": "reward", "path": str(classifier), "name": "", "reward_label": ""}
    refused = client.post("/models/import", data=form)
    assert refused.status_code == 422 and 'id="import-error"' in refused.text and "nothate" in refused.text
    assert f'value="{classifier}"' in refused.text and '<option value="reward" selected>' in refused.text
    done = client.post("/models/import", data=form | {"reward_label": "nothate"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/models?notice=imported"
    listed = client.get(done.headers["location"]).text
    assert "Model registered" in listed and "detox" in listed and "imported" in listed
    assert "not better than chance" not in listed, "a classifier from elsewhere was not measured here"
    version = client.get("/api/v1/models", headers=admin.headers).json()["items"][0]
    assert version["name"] == "detox" and version["reward_label"] == 0
