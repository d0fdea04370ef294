"""Labeler quality: gold tasks handed out at the project's gold_rate and scored, never exported; the rules
flag a random labeler (gold agreement) and a too-fast one (time), not a careful one; an admin overrides a
status; exclude_labeler_status leaves the flagged labelers' work out of exports."""

import json
import random

import pytest

from app.labeling import service as labeling_service
from tests.conftest import create_project
from tests.helpers import assert_error

API = "/api/v1"


def upload(client, admin, project_id: int, lines: list[dict]) -> None:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    response = client.post(f"{API}/projects/{project_id}/prompts", content=body, headers=headers)
    assert response.status_code == 201, response.text


def alphabetical(task: dict) -> list[list[int]]:
    return [[c["id"]] for c in sorted(task["completions"], key=lambda c: c["text"])]


def shuffled(task: dict) -> list[list[int]]:
    ids = [[c["id"]] for c in task["completions"]]
    random.Random(task["assignment_id"]).shuffle(ids)
    return ids


def work(client, labeler, project_id: int, order, seconds: float) -> tuple[int, int]:
    """Rank every task handed out; (tasks, gold tasks among them)."""
    tasks = gold = 0
    while (
        task := client.get(f"{API}/tasks/next", params={"project_id": project_id}, headers=labeler.headers)
    ).status_code == 200:
        task = task.json()
        gold += task["prompt"]["messages"][0]["content"].startswith("gold")
        body = {"ranking": order(task), "seconds_spent": seconds}
        response = client.post(
            f"{API}/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
        )
        assert response.status_code == 201, response.text
        assert set(response.json()) >= {"ranking_id", "comparisons"}, "a gold task answers like any other"
        tasks += 1
    return tasks, gold


@pytest.fixture
def campaign(client, admin, make_account, monkeypatch):
    """20 ordinary prompts ranked by 3 labelers each and 6 gold prompts (known order: alphabetical); a
    careful labeler, one who ranks at random, one who is right but submits in half a second."""
    monkeypatch.setattr(labeling_service._shuffler, "random", random.Random(7).random)
    project = create_project(
        client, admin, completions_per_prompt=4, rankings_per_prompt=3, gold_rate=0.4, gold_min_tasks=3
    )
    texts = ["apple", "banana", "cherry", "damson"]
    upload(
        client,
        admin,
        project["id"],
        [{"prompt": f"question {i}", "completions": [f"{t} {i}" for t in texts]} for i in range(20)],
    )
    gold = [
        {
            "prompt": f"gold {i}",
            "completions": [f"{t} g{i}" for t in reversed(texts)],
            "gold": [[3], [2], [1], [0]],
        }
        for i in range(6)
    ]
    upload(client, admin, project["id"], gold)
    careful, careless, hasty = (make_account("labeler", name) for name in ("careful", "careless", "hasty"))
    done = {
        "careful": work(client, careful, project["id"], alphabetical, 12.0),
        "careless": work(client, careless, project["id"], shuffled, 9.0),
        "hasty": work(client, hasty, project["id"], alphabetical, 0.5),
    }
    return project, done, {"careful": careful, "careless": careless, "hasty": hasty}


def test_gold_tasks_are_handed_out_scored_and_never_exported(client, admin, campaign) -> None:
    project, done, _ = campaign
    for name, (tasks, gold) in done.items():
        assert tasks == 20 + 6 and gold == 6, (name, "every prompt once, each gold task once")
    pairs = [
        json.loads(line)
        for line in client.get(
            f"{API}/projects/{project['id']}/export", headers=admin.headers
        ).text.splitlines()
    ]
    assert len(pairs) == 3 * 20 * 6, "only the ordinary prompts' rankings, C(4,2) pairs each"
    assert not any(p["prompt"][0]["content"].startswith("gold") for p in pairs)
    agreement = client.get(f"{API}/projects/{project['id']}/agreement", headers=admin.headers).json()
    assert agreement["rankings"] == 3 * 20, "gold rankings are not agreement data either"


def test_the_rules_flag_the_random_and_the_too_fast_labeler_only(client, admin, campaign) -> None:
    project, _, accounts = campaign
    rows = {
        r["username"]: r
        for r in client.get(f"{API}/projects/{project['id']}/labelers", headers=admin.headers).json()["items"]
    }
    assert rows["careful"]["status"] == "ok" and rows["careful"]["gold_agreement"] == pytest.approx(1.0)
    assert rows["careless"]["status"] == "flagged" and "gold agreement" in rows["careless"]["reasons"][0]
    assert rows["hasty"]["status"] == "flagged" and "faster than 3 s" in rows["hasty"]["reasons"][0]
    assert rows["hasty"]["gold_agreement"] == pytest.approx(1.0) and rows["hasty"]["fast_share"] == 1.0
    assert rows["careful"]["pseudonym"].startswith("l-") and rows["careful"]["rankings"] == 20

    kept = client.get(
        f"{API}/projects/{project['id']}/export",
        params={"exclude_labeler_status": "flagged,excluded"},
        headers=admin.headers,
    )
    labelers = {json.loads(line)["labeler"] for line in kept.text.splitlines()}
    assert labelers == {rows["careful"]["pseudonym"]}

    # an admin's word beats the rules, until taken back
    url = f"{API}/projects/{project['id']}/labelers/{accounts['hasty'].user_id}"
    overridden = client.patch(url, json={"status": "ok"}, headers=admin.headers).json()
    assert (
        overridden["status"] == "ok"
        and overridden["computed_status"] == "flagged"
        and overridden["status_set_by_admin"]
    )
    assert_error(client.patch(url, json={"status": "great"}, headers=admin.headers), 422)
    assert client.patch(url, json={"status": None}, headers=admin.headers).json()["status"] == "flagged"
    assert_error(
        client.get(
            f"{API}/projects/{project['id']}/export",
            params={"exclude_labeler_status": "bad"},
            headers=admin.headers,
        ),
        422,
    )


def test_a_ranking_becomes_gold_and_leaves_the_data(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    upload(client, admin, project["id"], [{"prompt": "question 0", "completions": ["a", "b"]}])
    labeler = make_account("labeler")
    work(client, labeler, project["id"], alphabetical, 10.0)
    (pair,) = [
        json.loads(line)
        for line in client.get(
            f"{API}/projects/{project['id']}/export", headers=admin.headers
        ).text.splitlines()
    ]
    made = client.post(f"{API}/rankings/{pair['ranking_id']}/gold", headers=admin.headers)
    assert made.status_code == 200 and made.json()["rankings_now_gold"] == 1
    assert client.get(f"{API}/projects/{project['id']}/export", headers=admin.headers).text == ""
    assert_error(client.post(f"{API}/rankings/987654/gold", headers=admin.headers), 404)


def test_bad_gold_lines_are_refused_with_the_line(client, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=3)
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    for line, says in (
        ({"prompt": "q", "completions": ["a", "b", "c"], "gold": [[0], [1]]}, "exactly one tier"),
        ({"prompt": "q", "completions": ["a", "b"], "gold": [[0], [1]]}, "needs all K=3 completions"),
        ({"prompt": "q", "completions": ["a", "b", "c"], "gold": [[0, 1, 2]]}, "at least two"),
    ):
        response = client.post(
            f"{API}/projects/{project['id']}/prompts", content=json.dumps(line).encode(), headers=headers
        )
        assert_error(response, 422)
        assert says in response.text, (line, response.text)


def test_the_labelers_page_shows_flagged_labelers_first_and_takes_an_override(
    client, app, admin, campaign
) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import browser_login

    project, _, accounts = campaign
    with TestClient(app) as browser:
        csrf = browser_login(browser, admin)
        page = browser.get(f"/projects/{project['id']}/labelers").text
        assert "2 flagged or excluded" in page
        assert page.index(">careless<") < page.index(">careful<") and page.index(">hasty<") < page.index(
            ">careful<"
        )
        assert "gold agreement" in page and "faster than 3 s" in page and "l-" in page
        done = browser.post(
            f"/projects/{project['id']}/labelers/{accounts['careful'].user_id}",
            data={"csrf_token": csrf, "status": "excluded"},
        )
        assert (
            done.status_code == 200 and "3 flagged or excluded" in done.text and "rules say ok" in done.text
        )
