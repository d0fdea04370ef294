"""Many labelers at once against a real server: no prompt over-assigned, no labeler served twice.

Runs on both backends; the Postgres leg is the one the issue asks for (row locks with SKIP LOCKED and
the unique slot constraint under real parallel transactions).
"""

import threading
from collections import Counter

import httpx
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
