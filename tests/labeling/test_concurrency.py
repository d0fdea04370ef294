"""Many labelers at once against a real server: no prompt over-assigned, no labeler served twice.

Runs on both backends; the Postgres leg is the one the issue asks for (row locks with SKIP LOCKED and
the unique slot constraint under real parallel transactions).
"""

import threading
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from app.labeling.models import Assignment, Comparison, Ranking
from tests.conftest import create_project
from tests.labeling.conftest import seed_ready_prompts

LABELERS = 16
PROMPTS = 12
RANKINGS_PER_PROMPT = 3


def test_concurrent_labelers_never_over_assign(client, admin, make_account, live_server, db) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=RANKINGS_PER_PROMPT)
    seed_ready_prompts(client, admin, project["id"], n=PROMPTS, k=3)
    labelers = [make_account("labeler") for _ in range(LABELERS)]
    errors: list[str] = []
    start = threading.Barrier(LABELERS)

    def work(account) -> None:
        with httpx.Client(base_url=live_server, headers=account.headers, timeout=30) as http:
            start.wait()
            for _ in range(PROMPTS + 2):
                response = http.get("/api/v1/tasks/next", params={"project_id": project["id"]})
                if response.status_code == 204:
                    return
                if response.status_code != 200:
                    errors.append(f"next {response.status_code} {response.text}")
                    return
                task = response.json()
                tiers = [[c["id"]] for c in task["completions"]]
                result = http.post(
                    f"/api/v1/assignments/{task['assignment_id']}/ranking", json={"ranking": tiers}
                )
                if result.status_code != 201:
                    errors.append(f"rank {result.status_code} {result.text}")

    threads = [threading.Thread(target=work, args=(account,)) for account in labelers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []

    rankings = db.execute(select(Ranking.prompt_id, Ranking.labeler_id)).all()
    per_prompt = Counter(prompt_id for prompt_id, _ in rankings)
    assert per_prompt == {pid: RANKINGS_PER_PROMPT for pid in per_prompt}, "over- or under-assigned"
    assert len(per_prompt) == PROMPTS, "every prompt got its rankings"
    assert len(set(rankings)) == len(rankings), "a labeler ranked a prompt twice"
    assert db.scalar(select(func.count(Comparison.id))) == len(rankings) * 3  # C(3,2) each
    live = db.scalar(select(func.count(Assignment.id)).where(Assignment.status == "live"))
    assert live == 0


BURST = 60


def _burst(live_server: str, accounts, request) -> Counter:
    """Every account fires one request at the same instant; the statuses, counted."""
    statuses: Counter = Counter()
    start = threading.Barrier(len(accounts))

    def fire(account) -> None:
        with httpx.Client(base_url=live_server, headers=account.headers, timeout=60) as http:
            start.wait()
            response = request(http)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                assert response.headers["content-type"].startswith("application/json"), response.text
                assert response.headers.get("retry-after"), "a 503 says when to retry"

    threads = [threading.Thread(target=fire, args=(account,)) for account in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def test_a_burst_of_requests_is_served_without_errors(make_account, live_server) -> None:
    """More simultaneous requests than the thread pool has threads and the pool has connections: they
    wait their turn (on SQLite they used to freeze the server for 30 s and answer 500 and 503)."""
    accounts = [make_account("labeler") for _ in range(BURST)]
    statuses = _burst(live_server, accounts, lambda http: http.get("/api/v1/me"))
    assert statuses == {200: BURST}


@pytest.mark.parametrize(("labelers", "prompts"), [(50, 25), (40, 10)])
def test_labelers_asking_for_a_task_at_once_get_every_free_slot(
    client, admin, make_account, live_server, db, labelers, prompts
) -> None:
    """All at once, 2 slots per prompt: a task for each labeler while slots last, "nothing left" (204)
    only once every slot is taken, no deadlock, no error. Postgres used to answer 204 with slots free."""
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=prompts, k=2)
    accounts = [make_account("labeler") for _ in range(labelers)]
    statuses = _burst(
        live_server,
        accounts,
        lambda http: http.get("/api/v1/tasks/next", params={"project_id": project["id"]}),
    )
    slots = 2 * prompts
    assert statuses == ({200: labelers} if slots >= labelers else {200: slots, 204: labelers - slots})
    live = db.execute(
        select(Assignment.prompt_id, Assignment.labeler_id).where(Assignment.status == "live")
    ).all()
    assert len(live) == min(labelers, slots) and len(set(live)) == len(live)
    assert set(Counter(prompt_id for prompt_id, _ in live).values()) == {2}
