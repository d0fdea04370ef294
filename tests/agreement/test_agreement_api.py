"""Agreement through the app: three labelers rank through the API, the report and the page show who
disagrees. Runs on SQLite and on Postgres (the `client` fixture).

The scenario (K = 3, three rankings per prompt, two prompts; x < y < z are each prompt's completion ids):

    prompt 1:  a = x > y > z   b = x > y > z   c = z > y > x   (c reverses the others)
    prompt 2:  a = x > y > z   b = x > y > z   c = y > x > z   (c swaps the top two)

Prompt agreement (mean tau-b over the three pairs):
    prompt 1: (a,b) = 1, (a,c) = -1, (b,c) = -1                 -> -1/3
    prompt 2: (a,b) = 1, (a,c) = 1/3, (b,c) = 1/3               -> 5/9
Leave-one-out (each labeler against the Bradley-Terry consensus of the other two):
    prompt 1: a vs consensus(b, c): b and c cancel out, all tied -> undefined; b the same; c vs x>y>z -> -1
    prompt 2: a vs consensus(b, c) = {x, y} > z -> 2 / sqrt(3 * 2) = 2/sqrt(6); b the same; c vs x>y>z -> 1/3
Per labeler (mean over the prompts where it is defined):
    a = b = 2/sqrt(6) = 0.816 (one of two shared prompts comparable); c = (-1 + 1/3) / 2 = -1/3
"""

import math
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.agreement.service import agreement_by_prompt
from app.labeling.models import Ranking
from app.prompts.models import Completion
from tests.conftest import Account, create_project
from tests.labeling.conftest import seed_ready_prompts

HTMX = {"HX-Request": "true"}
Order = Callable[[int, list[int]], list[list[int]]]  # (prompt number, sorted completion ids) -> tiers


def rank_everything(
    client: TestClient,
    project_id: int,
    labeler: Account,
    order: Order,
    *,
    prompt_ids: list[int],
    seconds: list[float] | None = None,
) -> int:
    """Take tasks until none is left and rank each as `order` says for that prompt (numbered from 1 in
    `prompt_ids` order); returns how many were ranked."""
    number = {prompt_id: n for n, prompt_id in enumerate(prompt_ids, start=1)}
    done = 0
    while True:
        response = client.get(
            "/api/v1/tasks/next", params={"project_id": project_id}, headers=labeler.headers
        )
        assert response.status_code in (200, 204), response.text
        if response.status_code == 204:
            return done
        task = response.json()
        ids = sorted(c["id"] for c in task["completions"])
        body = {"ranking": order(number.get(task["prompt"]["id"], 0), ids)}
        if seconds is not None:
            body["seconds_spent"] = seconds[done]
        posted = client.post(
            f"/api/v1/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
        )
        assert posted.status_code == 201, posted.text
        done += 1


def prompt_ids_of(client: TestClient, admin: Account, project_id: int) -> list[int]:
    listing = client.get(f"/api/v1/projects/{project_id}/prompts", headers=admin.headers)
    assert listing.status_code == 200, listing.text
    return sorted(p["id"] for p in listing.json()["items"])


def agree(_: int, ids: list[int]) -> list[list[int]]:
    return [[cid] for cid in ids]  # x > y > z


def dissent(number: int, ids: list[int]) -> list[list[int]]:
    x, y, z = ids
    return [[z], [y], [x]] if number == 1 else [[y], [x], [z]]


@pytest.fixture
def ranked(client: TestClient, admin: Account, make_account) -> dict:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=3)
    seed_ready_prompts(client, admin, project["id"], n=2, k=3)
    prompt_ids = prompt_ids_of(client, admin, project["id"])
    a, b, c = make_account("labeler", "ana"), make_account("labeler", "ben"), make_account("labeler", "cy")
    assert rank_everything(client, project["id"], a, agree, prompt_ids=prompt_ids, seconds=[10.0, 20.0]) == 2
    assert rank_everything(client, project["id"], b, agree, prompt_ids=prompt_ids, seconds=[30.0, 30.0]) == 2
    assert rank_everything(client, project["id"], c, dissent, prompt_ids=prompt_ids, seconds=[4.0, 6.0]) == 2
    return {"project": project, "prompts": prompt_ids, "a": a, "b": b, "c": c}


def test_report_shows_the_dissenter_with_the_lowest_agreement(client, admin, ranked) -> None:
    response = client.get(f"/api/v1/projects/{ranked['project']['id']}/agreement", headers=admin.headers)
    assert response.status_code == 200, response.text
    report = response.json()
    p1, p2 = ranked["prompts"]

    assert report["rankings"] == 6 and report["rankings_per_prompt"] == 3
    assert report["progress"] == {
        "prompts": 2,
        "ranked": 2,
        "complete": 2,
        "ranked_twice": 2,
        "with_agreement": 2,
    }

    prompts = {p["prompt_id"]: p for p in report["prompts"]}
    assert prompts[p1]["rankings"] == 3
    assert prompts[p1]["agreement"] == pytest.approx(-1 / 3)
    assert prompts[p2]["agreement"] == pytest.approx(5 / 9)
    # The consensus follows the two who agree on both prompts: x > y > z.
    for prompt in prompts.values():
        x, y, z = sorted(int(cid) for cid in prompt["scores"])
        assert prompt["consensus"] == [[x], [y], [z]]
        assert prompt["scores"][str(x)] > prompt["scores"][str(y)] > prompt["scores"][str(z)]
    assert report["mean_agreement"] == pytest.approx((-1 / 3 + 5 / 9) / 2)
    # -1/3 falls in [-0.4, -0.2), 5/9 in [0.4, 0.6)
    assert [b["count"] for b in report["histogram"]] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0]

    labelers = report["labelers"]
    assert [row["username"] for row in labelers] == ["cy", "ana", "ben"], "least agreement first"
    by_name = {row["username"]: row for row in labelers}
    assert by_name["cy"]["agreement"] == pytest.approx(-1 / 3)
    assert by_name["cy"]["prompts_shared"] == 2 and by_name["cy"]["prompts_defined"] == 2
    for name in ("ana", "ben"):
        assert by_name[name]["agreement"] == pytest.approx(2 / math.sqrt(6))
        assert by_name[name]["prompts_shared"] == 2 and by_name[name]["prompts_defined"] == 1
    assert min(labelers, key=lambda row: row["agreement"])["username"] == "cy"
    assert by_name["ana"]["rankings"] == 2 and by_name["ana"]["labeler_id"] == ranked["a"].user_id
    assert by_name["ana"]["median_seconds"] == pytest.approx(15.0)
    assert by_name["cy"]["median_seconds"] == pytest.approx(5.0)
    # cy's per-prompt values: -1 (first bin) and 1/3 ([0.2, 0.4))
    assert [b["count"] for b in by_name["cy"]["histogram"]] == [1, 0, 0, 0, 0, 0, 1, 0, 0, 0]


def test_agreement_by_prompt_matches_the_report(client, admin, ranked, db) -> None:
    p1, p2 = ranked["prompts"]
    values = agreement_by_prompt(db, project_id=ranked["project"]["id"])
    assert values == {p1: pytest.approx(-1 / 3), p2: pytest.approx(5 / 9)}
    report = client.get(f"/api/v1/projects/{ranked['project']['id']}/agreement", headers=admin.headers).json()
    assert values == {p["prompt_id"]: pytest.approx(p["agreement"]) for p in report["prompts"]}


def test_researcher_reads_the_report_labeler_may_not(client, make_account, ranked) -> None:
    project_id = ranked["project"]["id"]
    researcher = make_account("researcher")
    assert (
        client.get(f"/api/v1/projects/{project_id}/agreement", headers=researcher.headers).status_code == 200
    )
    refused = client.get(f"/api/v1/projects/{project_id}/agreement", headers=ranked["a"].headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "wrong_role"
    # The role is checked before the project is looked up: a labeler learns nothing about project ids.
    assert client.get("/api/v1/projects/9999/agreement", headers=ranked["a"].headers).status_code == 403
    assert client.get(f"/api/v1/projects/{project_id}/agreement").status_code == 401


def test_unknown_project_is_404(client, admin) -> None:
    response = client.get("/api/v1/projects/9999/agreement", headers=admin.headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "project_not_found"
    assert client.get("/projects/9999/agreement", headers=admin.headers).status_code == 404


# --- the page --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "researcher"])
def test_page_renders_for_admin_and_researcher(client, make_account, ranked, role) -> None:
    reader = make_account(role)
    page = client.get(f"/projects/{ranked['project']['id']}/agreement", headers=reader.headers)
    assert page.status_code == 200, page.text
    html = page.text
    assert "Agreement &amp; labelers" in html
    assert html.index(">cy<") < html.index(">ana<") < html.index(">ben<"), "the dissenter comes first"
    assert "labeler-row--disagrees" in html and "⚠ disagrees" in html
    assert "\u22120.33" in html  # cy's agreement, with a real minus sign
    assert "+0.82" in html  # ana's and ben's
    assert '<svg viewBox="0 0 640 220"' in html and "agreement-chart__bar--" in html
    assert "Prompts with the least agreement" in html


def test_page_for_labeler_is_403_and_links_from_the_project(client, admin, ranked) -> None:
    project_id = ranked["project"]["id"]
    assert client.get(f"/projects/{project_id}/agreement", headers=ranked["c"].headers).status_code == 403
    detail = client.get(f"/projects/{project_id}", headers=admin.headers)
    assert f'href="/projects/{project_id}/agreement"' in detail.text


def test_sorting_the_labelers_swaps_the_table(client, admin, ranked) -> None:
    url = f"/projects/{ranked['project']['id']}/agreement"
    fragment = client.get(url, params={"sort": "rankings"}, headers={**admin.headers, **HTMX})
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section id="labelers"') and "<html" not in fragment.text
    by_time = client.get(url, params={"sort": "time"}, headers={**admin.headers, **HTMX}).text
    assert by_time.index(">cy<") < by_time.index(">ana<") < by_time.index(">ben<")  # 5 s, 15 s, 30 s
    by_name = client.get(url, params={"sort": "name"}, headers=admin.headers).text
    assert "<html" in by_name and by_name.index(">ana<") < by_name.index(">ben<") < by_name.index(">cy<")
    assert client.get(url, params={"sort": "nonsense"}, headers=admin.headers).status_code == 200


# --- empty states and imported rankings ----------------------------------------------------------


def test_one_ranking_per_prompt_explains_what_agreement_needs(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=2, k=3)

    empty = client.get(f"/projects/{project['id']}/agreement", headers=admin.headers)
    assert empty.status_code == 200
    assert "set rankings per prompt ≥ 2" in empty.text
    assert "No labeler has ranked a prompt yet" in empty.text

    labeler = make_account("labeler")
    assert rank_everything(client, project["id"], labeler, agree, prompt_ids=[], seconds=[1.0, 2.0]) == 2

    report = client.get(f"/api/v1/projects/{project['id']}/agreement", headers=admin.headers).json()
    assert report["mean_agreement"] is None
    assert report["progress"] == {
        "prompts": 2,
        "ranked": 2,
        "complete": 2,
        "ranked_twice": 0,
        "with_agreement": 0,
    }
    (row,) = report["labelers"]
    assert row["agreement"] is None and row["prompts_shared"] == 0
    assert row["rankings"] == 2 and row["median_seconds"] == pytest.approx(1.5)
    for prompt in report["prompts"]:
        assert prompt["agreement"] is None
        assert prompt["consensus"] == [[int(cid)] for cid in sorted(prompt["scores"], key=int)]  # as ranked
    page = client.get(f"/projects/{project['id']}/agreement", headers=admin.headers).text
    assert "No agreement yet" in page and "no shared prompts" in page


def test_imported_rankings_count_for_the_prompt_but_have_no_labeler_row(
    client, admin, make_account, db
) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=1, k=3)
    labeler = make_account("labeler")
    assert rank_everything(client, project["id"], labeler, agree, prompt_ids=[]) == 1

    ranking = db.scalars(select(Ranking)).one()
    x, y, z = sorted(db.scalars(select(Completion.id).where(Completion.prompt_id == ranking.prompt_id)))
    db.add(
        Ranking(
            project_id=project["id"], prompt_id=ranking.prompt_id, source="hh-rlhf", tiers=[[z], [y], [x]]
        )
    )
    db.commit()

    report = client.get(f"/api/v1/projects/{project['id']}/agreement", headers=admin.headers).json()
    assert report["prompts"][0]["rankings"] == 2
    assert report["prompts"][0]["agreement"] == pytest.approx(-1.0)
    (row,) = report["labelers"]
    assert row["username"] == labeler.username
    assert row["agreement"] == pytest.approx(-1.0)  # against the imported ranking, the only other one
    assert agreement_by_prompt(db, project_id=project["id"]) == {ranking.prompt_id: pytest.approx(-1.0)}
