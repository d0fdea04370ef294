"""The job queue over the worker protocol: claim, lease, events, completion, retry, cancel."""

import threading
from datetime import timedelta

import httpx
from sqlalchemy import update

from app.db import utcnow
from app.jobs.models import Job
from tests.conftest import create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts

CLAIM = {"kinds": ["generate"], "worker": "test-worker"}


def queue(client, admin, project) -> int:
    response = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def test_generate_queues_once_and_worker_claims_it(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    job_id = queue(client, admin, project)
    assert queue(client, admin, project) == job_id, "a second request returns the job already queued"
    worker = make_account("worker")
    claimed = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers)
    assert claimed.status_code == 200
    body = claimed.json()
    assert body["id"] == job_id and body["kind"] == "generate" and body["attempts"] == 1
    assert body["config"]["k"] == 2 and body["config"]["model"] == "default"
    assert client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).status_code == 204
    other_kind = {"kinds": ["reward"], "worker": "w"}
    assert client.post("/api/v1/worker/claim", json=other_kind, headers=worker.headers).status_code == 204
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "running" and job["worker"] == "test-worker"


def test_events_complete_and_metrics_series(client, admin, make_account) -> None:
    project = create_project(client, admin)
    job_id = queue(client, admin, project)
    worker = make_account("worker")
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    for step in (1, 2):
        event = {
            "attempt": attempt,
            "progress": step / 4,
            "metrics": {"step": step, "loss/reward": 1.0 / step},
            "log": f"step {step}",
        }
        response = client.post(f"/api/v1/jobs/{job_id}/events", json=event, headers=worker.headers)
        assert response.status_code == 204
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["progress"] == 0.5 and job["metrics"] == {"step": 2, "loss/reward": 0.5}
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    assert [e["metrics"]["step"] for e in series] == [1, 2] and series[1]["log"] == "step 2"
    done = client.post(
        f"/api/v1/jobs/{job_id}/complete",
        json={"attempt": attempt, "metrics": {"prompts": 3}},
        headers=worker.headers,
    )
    assert done.status_code == 200 and done.json()["status"] == "succeeded" and done.json()["progress"] == 1.0
    again = client.post(
        f"/api/v1/jobs/{job_id}/events", json={"attempt": attempt, "progress": 1}, headers=worker.headers
    )
    assert_error(again, 409, "job_not_running")


def test_bad_event_is_422_and_unknown_job_404(client, admin, make_account) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    job_id = queue(client, admin, project)
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    url = f"/api/v1/jobs/{job_id}/events"
    assert_error(client.post(url, json={"attempt": attempt, "progress": 2}, headers=worker.headers), 422)
    missing = client.post(url, json={"progress": 0.5}, headers=worker.headers)
    assert_error(missing, 422)
    assert "attempt" in missing.text, "the attempt is required and the error says so"
    assert_error(
        client.post("/api/v1/jobs/999/events", json={"attempt": 1}, headers=worker.headers),
        404,
        "job_not_found",
    )
    assert_error(client.post("/api/v1/worker/claim", json={"kinds": []}, headers=worker.headers), 422)


def test_expired_lease_requeues_and_fences_the_old_worker(client, admin, make_account, db) -> None:
    project = create_project(client, admin)
    job_id = queue(client, admin, project)
    old, new = make_account("worker"), make_account("worker")
    first = client.post("/api/v1/worker/claim", json=CLAIM, headers=old.headers).json()
    db.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    second = client.post("/api/v1/worker/claim", json=CLAIM, headers=new.headers).json()
    assert second["id"] == job_id and second["attempts"] == first["attempts"] + 1
    late = {"progress": 0.9, "attempt": first["attempts"]}
    assert_error(
        client.post(f"/api/v1/jobs/{job_id}/events", json=late, headers=old.headers), 409, "lease_lost"
    )
    ok = {"progress": 0.1, "attempt": second["attempts"]}
    assert client.post(f"/api/v1/jobs/{job_id}/events", json=ok, headers=new.headers).status_code == 204


def test_only_the_worker_holding_the_claim_may_report(client, admin, make_account) -> None:
    """Another worker's token can neither finish, fail, feed nor hand back a job it never claimed."""
    project = create_project(client, admin, completions_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=1, k=0)
    job_id = queue(client, admin, project)
    holder, stranger = make_account("worker"), make_account("worker")
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=holder.headers).json()["attempts"]
    prompt_id = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()[
        "items"
    ][0]["id"]
    reports = {
        "events": {"progress": 0.9, "metrics": {"made/up": 1.0}},
        "heartbeat": {},
        "completions": {"items": [{"prompt_id": prompt_id, "completions": [{"text": "forged"}]}]},
        "complete": {"metrics": {"accuracy/eval": 0.99}},
        "fail": {"error": "forged"},
        "release": {},
    }
    for path, body in reports.items():
        refused = client.post(
            f"/api/v1/jobs/{job_id}/{path}", json={"attempt": attempt, **body}, headers=stranger.headers
        )
        assert_error(refused, 409, "job_not_held")
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "running" and job["progress"] == 0.0 and job["metrics"] == {}
    assert client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"] == []
    prompts = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    assert prompts[0]["completions"] == []
    done = client.post(f"/api/v1/jobs/{job_id}/complete", json={"attempt": attempt}, headers=holder.headers)
    assert done.status_code == 200, done.text


def test_job_fails_after_max_attempts_then_retry(client, admin, make_account, db) -> None:
    project = create_project(client, admin)
    job_id = queue(client, admin, project)
    worker = make_account("worker")
    for _ in range(3):
        assert client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).status_code == 200
        db.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        db.commit()
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "failed" and "attempts" in job["error"]
    retried = client.post(f"/api/v1/jobs/{job_id}/retry", headers=admin.headers).json()
    assert retried["status"] == "queued" and retried["attempts"] == 0
    assert client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["id"] == job_id


def test_fail_cancel_and_release(client, admin, make_account) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    job_id = queue(client, admin, project)
    claimed = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()
    released = client.post(
        f"/api/v1/jobs/{job_id}/release", json={"attempt": claimed["attempts"]}, headers=worker.headers
    )
    assert released.json()["status"] == "queued" and released.json()["attempts"] == 0
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    failed = client.post(
        f"/api/v1/jobs/{job_id}/fail",
        json={"attempt": attempt, "error": "CUDA out of memory"},
        headers=worker.headers,
    )
    assert failed.json()["status"] == "failed" and failed.json()["error"] == "CUDA out of memory"
    assert_error(client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin.headers), 409, "job_finished")

    job_id = queue(client, admin, project)
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin.headers).json()["status"] == "cancelled"
    stopped = client.post(
        f"/api/v1/jobs/{job_id}/events", json={"attempt": attempt, "progress": 0.5}, headers=worker.headers
    )
    assert_error(stopped, 409, "job_cancelled")


def test_generated_completions_are_capped_and_deduplicated(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=3)
    seed_ready_prompts(client, admin, project["id"], n=2, k=1)  # one imported completion each
    other = create_project(client, admin, name="other")
    seed_ready_prompts(client, admin, other["id"], n=1, k=1)
    job_id = queue(client, admin, project)
    worker = make_account("worker")
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    pending = client.get(
        f"/api/v1/projects/{project['id']}/prompts", params={"status": "pending"}, headers=worker.headers
    ).json()["items"]
    first, second = (p["id"] for p in pending)
    batch = {
        "attempt": attempt,
        "items": [
            {
                "prompt_id": first,
                "completions": [
                    {"text": "answer 0.0", "seed": 1},
                    {"text": "new A", "seed": 2},
                    {"text": " new A ", "seed": 3},
                    {"text": "new B", "seed": 4},
                    {"text": "new C", "seed": 5},
                ],
            },
            {"prompt_id": second, "completions": [{"text": "x", "seed": 9, "finished": False}]},
        ],
    }
    result = client.post(f"/api/v1/jobs/{job_id}/completions", json=batch, headers=worker.headers).json()
    assert result == {"added": 3, "duplicates": 2, "surplus": 1, "prompts_remaining": 1}
    prompts = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    texts = [c["text"] for c in prompts[0]["completions"]]
    assert texts == ["answer 0.0", "new A", "new B"] and prompts[0]["status"] == "ready"
    generated = prompts[0]["completions"][1]
    assert generated["origin"] == "generated" and generated["model"] == "default" and generated["seed"] == 2
    foreign = {"attempt": attempt, "items": [{"prompt_id": 999999, "completions": [{"text": "t"}]}]}
    assert_error(client.post(f"/api/v1/jobs/{job_id}/completions", json=foreign, headers=worker.headers), 422)


def test_concurrent_claims_never_share_a_job(client, admin, make_account, live_server) -> None:
    projects = [create_project(client, admin, name=f"p{i}") for i in range(6)]
    job_ids = {queue(client, admin, p) for p in projects}
    workers = [make_account("worker") for _ in range(8)]
    claimed: list[int] = []
    barrier = threading.Barrier(len(workers))

    def claim_all(account) -> None:
        with httpx.Client(base_url=live_server, headers=account.headers, timeout=30) as http:
            barrier.wait()
            while (response := http.post("/api/v1/worker/claim", json=CLAIM)).status_code == 200:
                claimed.append(response.json()["id"])

    threads = [threading.Thread(target=claim_all, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claimed) == sorted(job_ids), "every job claimed exactly once"


def test_heartbeat_renews_the_lease_and_stops_at_cancel(client, admin, make_account, db) -> None:
    project = create_project(client, admin, completions_per_prompt=2)
    job_id = queue(client, admin, project)
    worker = make_account("worker")
    attempt = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()["attempts"]
    soon = utcnow() + timedelta(seconds=5)
    db.execute(update(Job).values(lease_expires_at=soon))
    db.commit()
    url = f"/api/v1/jobs/{job_id}/heartbeat"
    assert client.post(url, json={"attempt": attempt}, headers=worker.headers).status_code == 204
    db.expire_all()
    assert db.get(Job, job_id).lease_expires_at > soon + timedelta(minutes=4)
    assert client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"] == []
    assert_error(client.post(url, json={"attempt": attempt + 1}, headers=worker.headers), 409)
    assert_error(client.post(url, json={"attempt": attempt}, headers=admin.headers), 403)
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin.headers)
    assert_error(client.post(url, json={"attempt": attempt}, headers=worker.headers), 409)


def test_worker_heartbeat_keeps_a_long_step_s_lease(
    client, admin, make_account, live_server, tmp_path, db
) -> None:
    """A handler that sends no event for longer than the heartbeat still has its lease renewed."""
    import time

    from trainer.client import ApiClient
    from trainer.worker import Worker

    project = create_project(client, admin, completions_per_prompt=2)
    job_id = queue(client, admin, project)
    renewals = []

    def lease(job_id: int):
        db.expire_all()
        value = db.get(Job, job_id).lease_expires_at
        db.rollback()  # no transaction left open while the server writes
        return value

    class Slow(Worker):
        @staticmethod
        def _handler(kind):
            def run(worker, job):
                before = lease(job.id)
                time.sleep(0.8)  # one long step, no events
                renewals.append(lease(job.id) > before)
                return {"done": 1}, None

            return run

    worker = Slow(
        ApiClient(live_server, make_account("worker").token),
        name="slow",
        kinds=["generate"],
        data_dir=tmp_path,
        poll_seconds=0.1,
        heartbeat_seconds=0.2,
    )
    worker.run(once=True)
    assert renewals == [True]
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["status"] == "succeeded"
