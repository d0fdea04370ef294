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
        models.status_code == 200 and "accuracy/eval 0.75" in models.text and f"#{job['id']}" in models.text
    )


def test_bad_form_and_roles(client, admin, make_account) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, admin)
    bad = client.post(f"/projects/{project['id']}/train/reward", data={"csrf_token": csrf, "epochs": "0"})
    assert bad.status_code == 422 and "epochs" in bad.text
    labeler = make_account("labeler")
    client.post("/logout", data={"csrf_token": csrf})
    browser_login(client, labeler)
    assert client.get("/models").status_code == 403
