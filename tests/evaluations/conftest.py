"""Helpers for evaluation rounds: policy versions registered as rows, a fake worker over the API, and a
labeler who ranks each prompt of a round as told."""

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.jobs.models import Job
from app.models_registry.models import ModelVersion
from tests.conftest import Account, create_project
from tests.labeling.conftest import seed_ready_prompts


def register_policy(
    session_factory: sessionmaker[Session],
    *,
    project_id: int | None,
    artifact: str,
    starting_policy: str | int | None = None,
    eval_prompt_ids: list[int] | None = None,
    kind: str = "policy",
) -> int:
    """A model version as a finished PPO run registers it; with a ppo job row when a starting policy or
    held-out prompts are given. Returns the version's id."""
    with session_factory() as session:
        job_id = None
        if starting_policy is not None or eval_prompt_ids is not None:
            job = Job(
                kind="ppo",
                status="succeeded",
                project_id=project_id,
                config={"policy": starting_policy or "default", "eval_prompt_ids": eval_prompt_ids or []},
            )
            session.add(job)
            session.flush()
            job_id = job.id
        base = f"model:{starting_policy}" if isinstance(starting_policy, int) else "default"
        version = ModelVersion(
            kind=kind, artifact=artifact, job_id=job_id, project_id=project_id, base_model=base
        )
        session.add(version)
        session.commit()
        return version.id


def parent_project(client: TestClient, admin: Account, *, n: int = 8) -> dict:
    """A project (K=3, two rankings a prompt) with n labelable prompts and one imported pair prompt."""
    project = create_project(
        client, admin, completions_per_prompt=3, rankings_per_prompt=2, instructions_md="# Prefer brevity"
    )
    seed_ready_prompts(client, admin, project["id"], n=n, k=3)
    return project


def post_completions(client: TestClient, worker: Account, job: dict, items: list[dict]):
    return client.post(
        f"/api/v1/jobs/{job['id']}/completions",
        json={"attempt": job["attempts"], "items": items},
        headers=worker.headers,
    )


def claim(client: TestClient, worker: Account) -> dict:
    response = client.post(
        "/api/v1/worker/claim", json={"kinds": ["generate"], "worker": "w"}, headers=worker.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def rank_round(
    client: TestClient, admin: Account, labeler: Account, round_: dict, decide: Callable[[int], str]
) -> list[dict]:
    """Rank every task of the round; `decide(prompt index)` says "win", "tie" or "loss" for the
    candidate. Returns the tasks as the labeler saw them."""
    prompts = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
    ).json()["items"]
    index = {p["id"]: i for i, p in enumerate(prompts)}
    writer = {c["id"]: c["model"] for p in prompts for c in p["completions"]}
    seen = []
    while (
        task := client.get(
            "/api/v1/tasks/next", params={"project_id": round_["round_project_id"]}, headers=labeler.headers
        )
    ).status_code == 200:
        task = task.json()
        seen.append(task)
        ids = [c["id"] for c in task["completions"]]
        candidate = next(cid for cid in ids if writer[cid] == round_["candidate"])
        baseline = next(cid for cid in ids if writer[cid] == round_["baseline"])
        verdict = decide(index[task["prompt"]["id"]])
        tiers = {
            "win": [[candidate], [baseline]],
            "loss": [[baseline], [candidate]],
            "tie": [[candidate, baseline]],
        }[verdict]
        response = client.post(
            f"/api/v1/assignments/{task['assignment_id']}/ranking",
            json={"ranking": tiers, "flags": {str(baseline): ["unsafe"]} if verdict == "win" else {}},
            headers=labeler.headers,
        )
        assert response.status_code == 201, response.text
    return seen
