"""Pages: start a reward run from the project page, watch its curves, see the model registered."""

from tests.conftest import browser_login, create_project

CLAIM = {"kinds": ["reward"], "worker": "gpu-1"}


def test_start_watch_and_list(client, admin, make_account) -> None:
    project = create_project(client, admin, flags=["unsafe", "nonsense"])
    csrf = browser_login(client, admin)
    detail = client.get(f"/projects/{project['id']}")
    assert "Train reward model" in detail.text
    started = client.post(
        f"/projects/{project['id']}/train/reward",
        follow_redirects=False,
        data={
            "csrf_token": csrf,
            "base_model": "default",
            "epochs": "2",
            "learning_rate": "1e-5",
            "max_length": "128",
            "exclude_flags": ["unsafe"],
            "min_agreement": "",
            "force": "true",  # no comparisons: the card and the run page are under test
        },
    )
    assert started.status_code == 303, started.text
    run_url = started.headers["location"]
    page = client.get(run_url)
    assert (
        page.status_code == 200
        and "waiting for a worker" in page.text
        and 'hx-trigger="every 2s"' in page.text
    )

    worker = make_account("worker")
    job = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()
    assert job["config"]["epochs"] == 2 and job["config"]["filters"]["exclude_flags"] == ["unsafe"]
    for step, (loss, acc) in enumerate([(0.69, 0.5), (0.55, 0.7), (0.41, 0.8)], start=1):
        event = {
            "attempt": job["attempts"],
            "progress": step / 3,
            "metrics": {"step": step * 10, "loss/train": loss, "accuracy/train": acc},
        }
        client.post(f"/api/v1/jobs/{job['id']}/events", json=event, headers=worker.headers)
    fragment = client.get(run_url, headers={"HX-Request": "true"})
    assert "<html" not in fragment.text and fragment.text.count("<polyline") == 2
    assert "loss/train" in fragment.text and "0.41" in fragment.text

    done = {
        "attempt": job["attempts"],
        "artifact": f"reward/job-{job['id']}",
        "metrics": {"accuracy/eval": 0.75},
    }
    client.post(f"/api/v1/jobs/{job['id']}/complete", json=done, headers=worker.headers)
    finished = client.get(run_url, headers={"HX-Request": "true"})
    assert "every 2s" not in finished.text, "a finished run stops polling"
    assert "Model version" in finished.text
    models = client.get("/models")
    assert (
        models.status_code == 200
        and "held-out accuracy 0.750 (no interval recorded)" in models.text
        and "not better than chance" in models.text
        and f"#{job['id']}" in models.text
    )


def test_bad_form_and_roles(client, admin, make_account) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    typed = {"csrf_token": csrf, "epochs": "0", "learning_rate": "3e-4", "min_agreement": "0.4"}
    bad = client.post(f"/projects/{project['id']}/train/reward", data={**typed, "exclude_flags": "unsafe"})
    assert bad.status_code == 422 and "epochs" in bad.text
    # the project page again, the card saying why and keeping what the admin typed; nothing was queued
    page = bad.text
    assert 'id="reward-error"' in page and "Upload prompts" in page
    assert 'name="epochs" type="number" min="1" max="50" value="0"' in page
    assert 'value="3e-4"' in page and 'value="0.4"' in page
    assert 'value="unsafe" checked' in page and 'value="nonsense" checked' not in page
    assert client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin.headers).json()["items"] == []
    labeler = make_account("labeler")
    client.post("/logout", data={"csrf_token": csrf})
    browser_login(client, labeler)
    assert client.get("/models").status_code == 403


def test_ppo_from_the_project_page_to_generating_with_the_new_policy(client, admin, make_account) -> None:
    from tests.helpers import registered_reward_model
    from tests.labeling.conftest import seed_ready_prompts

    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    csrf = browser_login(client, admin)
    assert "Train a reward model first" in client.get(f"/projects/{project['id']}").text
    reward_id = registered_reward_model(client, admin, worker, project["id"])
    detail = client.get(f"/projects/{project['id']}")
    assert "Run PPO" in detail.text and f'<option value="{reward_id}">' in detail.text

    form = {
        "csrf_token": csrf,
        "reward_model": str(reward_id),
        "policy": "default",
        "steps": "5",
        "kl_horizon": "200",
    }
    bad = client.post(f"/projects/{project['id']}/train/ppo", data={**form, "minibatch_size": "3"})
    assert bad.status_code == 422 and "minibatch_size" in bad.text
    assert 'id="ppo-error"' in bad.text
    assert 'name="minibatch_size" type="number" min="1" max="4096" value="3"' in bad.text
    assert 'name="kl_horizon" type="number" min="1" max="10000000" value="200"' in bad.text
    assert f'<option value="{reward_id}" selected>' in bad.text
    assert (
        client.post(
            f"/projects/{project['id']}/train/ppo", data={k: v for k, v in form.items() if k != "csrf_token"}
        ).status_code
        == 403
    )
    started = client.post(f"/projects/{project['id']}/train/ppo", data=form, follow_redirects=False)
    assert started.status_code == 303, started.text
    run_url = started.headers["location"]
    job_id = int(run_url.rsplit("/", 1)[1])

    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers
    ).json()
    assert claimed["id"] == job_id and claimed["config"]["steps"] == 5
    assert claimed["config"]["kl_horizon"] == 200
    sample = {
        "prompt": [{"role": "user", "content": "Say hi"}],
        "completion": "<script>alert(1)</script> hi",
        "score": 1.25,
    }
    for metrics in (
        {"step": 1, "reward/score": 0.2, "objective/kl": 0.0},
        {"step": 2, "reward/score": 0.5, "objective/kl": 0.4},
        {"step": 2, "samples": [sample]},
    ):
        client.post(
            f"/api/v1/jobs/{job_id}/events",
            json={"attempt": claimed["attempts"], "metrics": metrics},
            headers=worker.headers,
        )
    fragment = client.get(run_url, headers={"HX-Request": "true"})
    assert fragment.text.count("<polyline") == 2 and "KL to the reference" in fragment.text
    assert "Samples at step 2" in fragment.text and "1.250" in fragment.text
    assert "<script>alert(1)</script>" not in fragment.text and "&lt;script&gt;" in fragment.text

    done = {"attempt": claimed["attempts"], "artifact": f"ppo/job-{job_id}", "metrics": {}}
    model_id = client.post(f"/api/v1/jobs/{job_id}/complete", json=done, headers=worker.headers).json()[
        "model_id"
    ]
    finished = client.get(run_url)
    assert "Generate with it in" in finished.text
    switched = client.post(
        f"/projects/{project['id']}/generation-model",
        data={"csrf_token": csrf, "model_id": str(model_id)},
        follow_redirects=False,
    )
    assert switched.status_code == 303
    project_now = client.get(f"/api/v1/projects/{project['id']}", headers=admin.headers).json()
    assert project_now["generation"]["model"] == model_id
    assert "generates with it" in client.get(run_url).text
    refused = client.post(
        f"/projects/{project['id']}/generation-model", data={"csrf_token": csrf, "model_id": str(reward_id)}
    )
    assert refused.status_code == 422


def test_the_ppo_card_warns_about_a_reward_model_at_chance_and_starts_only_when_forced(
    client, admin, make_account
) -> None:
    from tests.helpers import AT_CHANCE, registered_reward_model
    from tests.labeling.conftest import seed_ready_prompts

    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    csrf = browser_login(client, admin)
    reward_id = registered_reward_model(client, admin, worker, project["id"], AT_CHANCE)
    detail = client.get(f"/projects/{project['id']}").text
    assert "0.550 [0.41, 0.68] on 120 pairs of 20 held-out prompts · not better than chance" in detail
    assert f"Reward model #{reward_id} is not shown" in detail and "Start anyway" in detail

    form = {"csrf_token": csrf, "reward_model": str(reward_id), "policy": "default", "steps": "5"}
    refused = client.post(f"/projects/{project['id']}/train/ppo", data=form)
    assert refused.status_code == 409 and "not better than chance" in refused.text
    started = client.post(
        f"/projects/{project['id']}/train/ppo", data={**form, "force": "true"}, follow_redirects=False
    )
    assert started.status_code == 303, started.text
    run = client.get(started.headers["location"]).text
    assert "waiting for a worker" in run
    assert f"Started against reward model #{reward_id}" in run and "not better than chance" in run
    models = client.get("/models").text
    assert "not better than chance" in models and "0.550 [0.41, 0.68]" in models


def _card_inputs(html: str, action: str, attribute: str = "value") -> dict[str, str]:
    """The named text/number inputs of the form posting to `action`, with the `attribute` they show."""
    import re

    form = html[html.index(f'action="{action}"') :]
    form = form[: form.index("</form>")]
    inputs = re.findall(r"<input\b[^>]*>", form)
    shown = {}
    for tag in inputs:
        name = re.search(r'name="([^"]+)"', tag)
        if name and 'type="hidden"' not in tag and 'type="checkbox"' not in tag:
            if attribute != "value" and 'type="number"' not in tag:
                continue  # limits are shown on number fields only
            value = re.search(rf' {attribute}="([^"]*)"', tag)
            shown[name.group(1)] = value.group(1) if value else ""
    return shown


def test_the_cards_number_fields_take_their_limits_from_the_request_schemas(
    client, admin, make_account
) -> None:
    from app.exports.schemas import TrainingFilters
    from app.forms import limits_of
    from app.runs.ppo.schemas import PPOTrainRequest
    from app.runs.reward.schemas import RewardTrainRequest
    from tests.helpers import registered_reward_model

    project = create_project(client, admin)
    registered_reward_model(client, admin, make_account("worker"), project["id"])
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}").text
    from app.runs.dpo.schemas import DPOTrainRequest
    from app.runs.sft.schemas import SFTTrainRequest

    for kind, schemas in (
        ("reward", [RewardTrainRequest, TrainingFilters]),
        ("ppo", [PPOTrainRequest]),
        ("sft", [SFTTrainRequest]),
        ("dpo", [DPOTrainRequest, TrainingFilters]),
    ):
        limits = {name: bounds for schema in schemas for name, bounds in limits_of(schema).items()}
        action = f"/projects/{project['id']}/train/{kind}"
        for bound in ("min", "max"):
            for name, shown in _card_inputs(page, action, bound).items():
                assert shown == str(limits[name].get(bound, "")), (kind, name, bound)
    assert 'name="epochs" type="number" min="1" max="50"' in page


def test_training_forms_show_and_send_the_api_defaults(client, admin, make_account) -> None:
    """The request schemas are the one source of the defaults: the forms show them, and a form sent as
    shown queues the same config as an API request that leaves every field out."""
    from app.runs.ppo.schemas import PPOTrainRequest
    from app.runs.reward.schemas import RewardTrainRequest
    from tests.helpers import registered_reward_model
    from tests.labeling.conftest import seed_ready_prompts

    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    csrf = browser_login(client, admin)
    reward_action = f"/projects/{project['id']}/train/reward"
    reward_form = _card_inputs(client.get(f"/projects/{project['id']}").text, reward_action)
    assert set(reward_form) == {"base_model", "epochs", "learning_rate", "max_length", "min_agreement"}
    for name, value in reward_form.items():
        default = RewardTrainRequest.model_fields[name].default if name != "min_agreement" else ""
        assert value == ("" if default in ("", None) else str(default)), name
        if value:
            assert type(default)(value) == default, name

    reward_id = registered_reward_model(client, admin, worker, project["id"])
    ppo_action = f"/projects/{project['id']}/train/ppo"
    ppo_form = _card_inputs(client.get(f"/projects/{project['id']}").text, ppo_action)
    assert {"steps", "learning_rate", "kl_coef", "target_kl", "kl_horizon", "max_new_tokens"} <= set(ppo_form)
    for name, value in ppo_form.items():
        default = PPOTrainRequest.model_fields[name].default
        if default is None:
            assert value == "", f"{name}: null in the API is an empty field"
        else:
            assert type(default)(value) == default, name

    # Sent as shown, and sent with every field left empty: the API's defaults either way.
    api = PPOTrainRequest(reward_model=reward_id).model_dump(mode="json")
    for sent in (ppo_form, dict.fromkeys(ppo_form, "")):
        started = client.post(
            ppo_action,
            data={"csrf_token": csrf, "reward_model": str(reward_id), **sent},
            follow_redirects=False,
        )
        assert started.status_code == 303, started.text
        job = client.post(
            "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers
        )
        config = job.json()["config"]
        for name in ppo_form:
            if name != "max_new_tokens":  # null: the project's length, filled in by the server
                assert config[name] == api[name], name
    fixed = client.post(
        ppo_action,
        data={"csrf_token": csrf, "reward_model": str(reward_id), "fixed_kl": "true"},
        follow_redirects=False,
    )
    assert fixed.status_code == 303, fixed.text
    job = client.post("/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers)
    assert job.json()["config"]["target_kl"] is None


def test_the_ppo_card_mixes_in_a_second_reward(client, admin, make_account) -> None:
    from tests.helpers import registered_reward_model
    from tests.labeling.conftest import seed_ready_prompts

    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    first = registered_reward_model(client, admin, worker, project["id"])
    second = registered_reward_model(client, admin, worker, project["id"])
    csrf = browser_login(client, admin)
    assert 'name="extra_reward"' in client.get(f"/projects/{project['id']}").text
    action = f"/projects/{project['id']}/train/ppo"
    form = {"csrf_token": csrf, "reward_model": str(first), "extra_reward": str(second)}
    refused = client.post(action, data={**form, "extra_weight": "lots"})
    assert refused.status_code == 422 and 'id="ppo-error"' in refused.text and 'value="lots"' in refused.text
    started = client.post(action, data={**form, "extra_weight": "-0.5"}, follow_redirects=False)
    assert started.status_code == 303, started.text
    claimed = client.post(
        "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers
    )
    (entry,) = claimed.json()["config"]["extra_reward_entries"]
    assert entry["weight"] == -0.5 and entry["name"] == f"model {second}"


def test_the_none_acceptable_box_is_ticked_by_default_and_can_be_unticked(client, admin) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}").text
    assert page.count('name="exclude_none_acceptable" value="true" checked') == 2, "reward and DPO cards"
    for ticked, expected in ((["false"], False), (["false", "true"], True)):
        form = {"csrf_token": csrf, "exclude_none_acceptable": ticked, "force": "true"}
        started = client.post(f"/projects/{project['id']}/train/reward", data=form, follow_redirects=False)
        assert started.status_code == 303, started.text
        job = client.get(f"/api/v1{started.headers['location']}", headers=admin.headers).json()
        assert job["config"]["filters"]["exclude_none_acceptable"] is expected
