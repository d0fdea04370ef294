"""Tasks, rankings and skips through the JSON API."""

from datetime import timedelta

from sqlalchemy import func, select, update

from app.db import utcnow
from app.labeling.models import Assignment, Comparison, Ranking
from tests.conftest import create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts


def next_task(client, labeler, project) -> dict | None:
    response = client.get("/api/v1/tasks/next", params={"project_id": project["id"]}, headers=labeler.headers)
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else None


def rank(client, labeler, task, ranking=None, **extra):
    ids = [c["id"] for c in task["completions"]]
    body = {"ranking": ranking if ranking is not None else [[i] for i in ids], **extra}
    return client.post(
        f"/api/v1/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
    )


def counts(db) -> tuple[int, int]:
    db.expire_all()
    return db.scalar(select(func.count(Ranking.id))), db.scalar(select(func.count(Comparison.id)))


def test_task_shape_and_shuffled_order_is_stored(client, make_account, ready_project, db) -> None:
    labeler = make_account("labeler")
    task = next_task(client, labeler, ready_project)
    assert set(task) == {
        "assignment_id",
        "project_id",
        "task",
        "instructions_md",
        "instructions_version",
        "prompt",
        "completions",
        "expires_at",
    }
    assert task["instructions_version"] == 1 and task["instructions_md"] == "# Rank by helpfulness"
    assert task["prompt"]["messages"][0]["role"] == "user"
    assert len(task["completions"]) == 4
    assert all(set(c) == {"id", "text"} for c in task["completions"]), "never say which model wrote it"
    stored = db.get(Assignment, task["assignment_id"])
    assert stored.shown_order == [c["id"] for c in task["completions"]]
    # Asking again returns the same live task instead of a second one.
    assert next_task(client, labeler, ready_project)["assignment_id"] == task["assignment_id"]


def test_submit_ranking_with_ties_writes_comparisons(client, make_account, ready_project, db) -> None:
    labeler = make_account("labeler")
    task = next_task(client, labeler, ready_project)
    a, b, c, d = (x["id"] for x in task["completions"])
    response = rank(
        client,
        labeler,
        task,
        [[b], [a, d], [c]],
        flags={str(c): ["nonsense"]},
        none_acceptable=False,
        seconds_spent=12.5,
    )
    assert response.status_code == 201, response.text
    assert response.json()["comparisons"] == 5
    ranking = db.get(Ranking, response.json()["ranking_id"])
    assert ranking.tiers == [[b], [a, d], [c]] and ranking.flags == {str(c): ["nonsense"]}
    assert ranking.seconds_spent == 12.5 and ranking.labeler_id == labeler.user_id
    assert ranking.shown_order == [a, b, c, d]
    pairs = {
        (x.chosen_id, x.rejected_id, x.chosen_tier, x.rejected_tier)
        for x in db.scalars(select(Comparison).where(Comparison.ranking_id == ranking.id))
    }
    assert pairs == {(b, a, 0, 1), (b, d, 0, 1), (b, c, 0, 2), (a, c, 1, 2), (d, c, 1, 2)}
    assert_error(rank(client, labeler, task), 409, "already_submitted")
    assert counts(db) == (1, 5)


def test_bad_rankings_are_422_and_write_nothing(client, make_account, ready_project, db) -> None:
    labeler = make_account("labeler")
    task = next_task(client, labeler, ready_project)
    a, b, c, d = (x["id"] for x in task["completions"])
    bad = [
        ({"ranking": [[a], [b], [c]]}, "missing"),
        ({"ranking": [[a], [b], [c], [d], [a]]}, "repeated"),
        ({"ranking": [[a], [b], [c], [d, 99999]]}, "not in this assignment"),
        ({"ranking": [[a], [], [b, c, d]]}, "empty"),
        ({"ranking": [[a, b, c, d]], "flags": {str(a): ["rude"]}}, "not flags of this project"),
        ({"ranking": [[a, b, c, d]], "flags": {"99999": ["unsafe"]}}, "not a completion"),
        ({"ranking": [[a, b, c, d]], "flags": {str(a): ["unsafe", "unsafe"]}}, "twice"),
        ({"ranking": [[a, b, c, d]], "seconds_spent": -1}, "seconds_spent"),
        ({"ranking": "a > b"}, "ranking"),
    ]
    for body, fragment in bad:
        response = client.post(
            f"/api/v1/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
        )
        error = assert_error(response, 422)
        assert fragment in error["message"] or fragment in str(error["details"]), (body, error)
    assert counts(db) == (0, 0)
    assert rank(client, labeler, task, [[a, b, c, d]]).json()["comparisons"] == 0, "all tied: zero pairs"


def test_another_labelers_assignment_is_403_and_unknown_404(client, make_account, ready_project) -> None:
    owner, other = make_account("labeler"), make_account("labeler")
    task = next_task(client, owner, ready_project)
    assert_error(rank(client, other, task), 403, "not_your_assignment")
    assert_error(client.post(f"/api/v1/assignments/{task['assignment_id']}/skip", headers=other.headers), 403)
    assert_error(client.post("/api/v1/assignments/424242/skip", headers=owner.headers), 404)


def test_expired_assignment_is_409_and_returns_to_the_pool(client, make_account, admin, db) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=1, k=2)
    first, second = make_account("labeler"), make_account("labeler")
    task = next_task(client, first, project)
    assert next_task(client, second, project) is None, "the only slot is taken"
    db.execute(update(Assignment).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert_error(rank(client, first, task), 409, "assignment_expired")
    handed_on = next_task(client, second, project)
    assert handed_on is not None and handed_on["prompt"]["id"] == task["prompt"]["id"]
    assert rank(client, second, handed_on).status_code == 201
    assert counts(db)[0] == 1


def test_rankings_per_prompt_and_never_twice(client, make_account, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=2, k=2)
    labelers = [make_account("labeler") for _ in range(3)]
    seen: dict[int, list[int]] = {}
    for labeler in labelers:
        while (task := next_task(client, labeler, project)) is not None:
            assert task["prompt"]["id"] not in seen.get(labeler.user_id, []), "a labeler got a prompt twice"
            seen.setdefault(labeler.user_id, []).append(task["prompt"]["id"])
            assert rank(client, labeler, task).status_code == 201
    per_prompt: dict[int, int] = {}
    for prompt_ids in seen.values():
        for pid in prompt_ids:
            per_prompt[pid] = per_prompt.get(pid, 0) + 1
    assert per_prompt == {pid: 2 for pid in per_prompt} and len(per_prompt) == 2
    statuses = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    assert [(p["status"], p["rankings"]) for p in statuses] == [("complete", 2), ("complete", 2)]


def test_skip_frees_the_slot_and_is_not_offered_again(client, make_account, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=1, k=2)
    skipper, other = make_account("labeler"), make_account("labeler")
    task = next_task(client, skipper, project)
    assert (
        client.post(f"/api/v1/assignments/{task['assignment_id']}/skip", headers=skipper.headers).status_code
        == 204
    )
    assert next_task(client, skipper, project) is None
    assert next_task(client, other, project)["prompt"]["id"] == task["prompt"]["id"]
    assert_error(rank(client, skipper, task), 409, "assignment_skipped")


def test_progress_counts(client, make_account, ready_project) -> None:
    labeler = make_account("labeler")
    url, params = "/api/v1/tasks/progress", {"project_id": ready_project["id"]}
    assert client.get(url, params=params, headers=labeler.headers).json() == {
        "ranked_today": 0,
        "ranked_total": 0,
        "left_in_project": 3,
    }
    rank(client, labeler, next_task(client, labeler, ready_project))
    assert client.get(url, params=params, headers=labeler.headers).json() == {
        "ranked_today": 1,
        "ranked_total": 1,
        "left_in_project": 2,
    }


def test_prompts_without_k_completions_are_not_handed_out(client, make_account, admin) -> None:
    project = create_project(client, admin, completions_per_prompt=3)
    seed_ready_prompts(client, admin, project["id"], n=2, k=2)  # only 2 of 3 completions
    assert next_task(client, make_account("labeler"), project) is None
