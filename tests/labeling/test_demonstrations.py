"""Demonstrations: `demonstrate` tasks, a ranking's rewrite, their export, and the admin's diff page."""

import io
import json

import pyarrow.parquet as pq
from sqlalchemy import func, select

from app.labeling.models import Assignment, Demonstration, Ranking
from tests.conftest import browser_login, create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts
from tests.labeling.test_labeling_api import next_task, rank


def demonstrate_project(client, admin, **overrides) -> dict:
    return create_project(
        client, admin, name="answers", task="demonstrate", rankings_per_prompt=2, **overrides
    )


def upload_bare_prompts(client, admin, project_id: int, n: int) -> None:
    body = "".join(json.dumps({"prompt": f"Explain topic {i}."}) + "\n" for i in range(n))
    response = client.post(
        f"/api/v1/projects/{project_id}/prompts",
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text


def demonstrate(client, labeler, task, text="A careful answer.", **extra):
    return client.post(
        f"/api/v1/assignments/{task['assignment_id']}/demonstration",
        json={"text": text, **extra},
        headers=labeler.headers,
    )


def stored(db) -> list[Demonstration]:
    db.expire_all()
    return list(db.scalars(select(Demonstration).order_by(Demonstration.id)))


def test_a_demonstrate_project_hands_out_prompts_without_completions(client, admin, make_account, db):
    project = demonstrate_project(client, admin)
    assert project["task"] == "demonstrate"
    upload_bare_prompts(client, admin, project["id"], n=1)
    first, second, third = (make_account("labeler") for _ in range(3))
    task = next_task(client, first, project)
    assert task["task"] == "demonstrate" and task["completions"] == []
    response = demonstrate(client, first, task, text="  Line one.\r\nLine two.\n\n", seconds_spent=12.5)
    assert response.status_code == 201, response.text
    (demo,) = stored(db)
    assert (
        demo.text == "Line one.\nLine two." and demo.source == "demonstrate" and demo.edited_from_id is None
    )
    assert demo.seconds_spent == 12.5 and demo.labeler_id == first.user_id
    assert db.get(Assignment, task["assignment_id"]).status == "submitted"
    # two labelers per prompt, as for ranking: the third gets nothing
    assert next_task(client, second, project) is not None
    assert next_task(client, third, project) is None
    progress = client.get(
        "/api/v1/tasks/progress", params={"project_id": project["id"]}, headers=first.headers
    ).json()
    assert progress["ranked_total"] == 1 and progress["ranked_today"] == 1


def test_a_demonstration_may_start_from_one_of_its_tasks_completions(client, admin, make_account, db):
    project = demonstrate_project(client, admin, completions_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=1, k=2)
    labeler = make_account("labeler")
    task = next_task(client, labeler, project)
    assert len(task["completions"]) == 2
    start = task["completions"][1]
    assert_error(demonstrate(client, labeler, task, edited_from=987654), 422)
    assert_error(demonstrate(client, labeler, task, text=" \n "), 422)
    assert stored(db) == [], "a refused answer stores nothing"
    response = demonstrate(client, labeler, task, text=start["text"] + " Better.", edited_from=start["id"])
    assert response.status_code == 201, response.text
    (demo,) = stored(db)
    assert demo.edited_from_id == start["id"] and demo.original_text == start["text"]
    assert_error(demonstrate(client, labeler, task), 409, "already_submitted")


def test_each_task_is_answered_its_own_way(client, admin, make_account, ready_project):
    labeler = make_account("labeler")
    task = next_task(client, labeler, ready_project)
    assert task["task"] == "rank"
    assert_error(demonstrate(client, labeler, task), 409, "wrong_task")
    project = demonstrate_project(client, admin)
    upload_bare_prompts(client, admin, project["id"], n=1)
    task = next_task(client, labeler, project)
    assert_error(rank(client, labeler, task, ranking=[[1]]), 409, "wrong_task")


def test_a_ranking_may_carry_a_rewrite_of_its_best_completion(client, make_account, ready_project, db):
    labeler = make_account("labeler")
    task = next_task(client, labeler, ready_project)
    a, b, c, d = task["completions"]
    ranking = [[b["id"]], [a["id"], c["id"]], [d["id"]]]
    # the rewrite must improve the best tier's completion, and change it: otherwise nothing is stored
    for rewrite, code in (
        ({"text": "Better.", "edited_from": a["id"]}, None),
        ({"text": b["text"], "edited_from": b["id"]}, "rewrite_unchanged"),
        ({"text": "Better.", "edited_from": 987654}, None),
    ):
        assert_error(rank(client, labeler, task, ranking=ranking, rewrite=rewrite), 422, code)
        db.expire_all()
        assert db.scalar(select(func.count(Ranking.id))) == 0 and stored(db) == []
    response = rank(
        client,
        labeler,
        task,
        ranking=ranking,
        rewrite={"text": b["text"] + " Also this.", "edited_from": b["id"]},
    )
    assert response.status_code == 201, response.text
    (demo,) = stored(db)
    assert response.json()["demonstration_id"] == demo.id
    assert demo.source == "rewrite" and demo.edited_from_id == b["id"] and demo.original_text == b["text"]
    assert demo.assignment_id == task["assignment_id"]


def test_demonstrations_export_in_trls_conversational_format(client, admin, make_account, db):
    project = demonstrate_project(client, admin, completions_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=2, k=2)
    labeler = make_account("labeler")
    for _ in range(2):
        task = next_task(client, labeler, project)
        start = task["completions"][0]
        assert demonstrate(client, labeler, task, text="Mine.", edited_from=start["id"]).status_code == 201
    url = f"/api/v1/projects/{project['id']}/export"
    response = client.get(url, params={"kind": "demonstrations"}, headers=admin.headers)
    assert response.status_code == 200, response.text
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 2
    first = rows[0]
    assert list(first) == [
        "prompt_id",
        "messages",
        "edited_from",
        "source",
        "demonstration_id",
        "seconds_spent",
        "labeler",
        "instructions_version",
        "created_at",
    ]
    assert first["messages"][0]["role"] == "user"
    assert first["messages"][-1] == {"role": "assistant", "content": "Mine."}
    assert first["source"] == "demonstrate" and first["instructions_version"] == 1
    assert first["labeler"].startswith("l-"), "a pseudonym, never the username"
    parquet = client.get(url, params={"kind": "demonstrations", "format": "parquet"}, headers=admin.headers)
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.to_pylist() == rows
    refused = client.get(url, params={"kind": "demonstrations", "min_agreement": 0.5}, headers=admin.headers)
    assert_error(refused, 422)
    pseudonym = first["labeler"]
    only = client.get(url, params={"kind": "demonstrations", "labelers": pseudonym}, headers=admin.headers)
    assert len(only.text.splitlines()) == 2


def test_the_task_is_fixed_once_a_labeler_was_handed_one(client, admin, make_account):
    project = create_project(client, admin)
    patch = client.patch(
        f"/api/v1/projects/{project['id']}", json={"task": "demonstrate"}, headers=admin.headers
    )
    assert patch.status_code == 200 and patch.json()["task"] == "demonstrate"
    upload_bare_prompts(client, admin, project["id"], n=1)
    assert next_task(client, make_account("labeler"), project) is not None
    refused = client.patch(f"/api/v1/projects/{project['id']}", json={"task": "rank"}, headers=admin.headers)
    assert_error(refused, 409, "task_locked")


def test_admins_see_each_rewrite_as_an_escaped_word_diff(client, admin, make_account, db):
    project = create_project(client, admin, completions_per_prompt=2)
    body = json.dumps({"prompt": "Say hi", "completions": ["Hello <b>there</b> friend", "Hi."]}) + "\n"
    client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    labeler = make_account("labeler")
    task = next_task(client, labeler, project)
    best = next(c for c in task["completions"] if c["text"].startswith("Hello"))
    other = next(c for c in task["completions"] if c is not best)
    rewrite = {"text": "Hello <b>there</b> dear friend <script>x()</script>", "edited_from": best["id"]}
    response = rank(client, labeler, task, ranking=[[best["id"]], [other["id"]]], rewrite=rewrite)
    assert response.status_code == 201, response.text
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}/demonstrations")
    assert page.status_code == 200
    assert "<ins> dear</ins>" in page.text or "<ins>dear </ins>" in page.text
    assert "&lt;script&gt;" in page.text and "<script>x()" not in page.text
    assert "&lt;b&gt;there&lt;/b&gt;" in page.text
