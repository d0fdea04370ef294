"""The ranking screen (/label) and the generation card of the project page, through the real app.

The form is posted the way a browser without JavaScript posts it (selects named tier_<id>) and the way
htmx posts it (the same fields, with HX-Request): both must store exactly the tiers the fields say.
"""

import hashlib
import json
import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.db import utcnow
from app.jobs.models import Job
from app.labeling.models import Assignment, Comparison, Ranking
from app.settings import PROJECT_ROOT
from app.static_files import static_url
from tests.conftest import Account, browser_login, create_project
from tests.labeling.conftest import seed_ready_prompts

HTMX = {"HX-Request": "true"}
ACTION = re.compile(r'action="/label/(\d+)/ranking"')
TIER_FIELD = re.compile(r'name="tier_(\d+)"')
XSS = "<script>alert(1)</script>"
CODE = "```python\nprint(1)\n```"
CHAT = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hi <b>loudly</b>."},
    {"role": "assistant", "content": "hi"},
    {"role": "user", "content": "Now show me code."},
]


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def project(client: TestClient, admin: Account) -> dict:
    """K=4, two rankings per prompt, flags unsafe and nonsense, three prompts ready to rank."""
    project = create_project(client, admin, completions_per_prompt=4, rankings_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=3, k=4)
    return project


@pytest.fixture
def labeler(client: TestClient, make_account: Callable[..., Account]) -> tuple[Account, str]:
    """A labeler logged in through the login form; the CSRF token of their session."""
    account = make_account("labeler")
    return account, browser_login(client, account)


def task_of(html: str) -> tuple[int, list[int]]:
    """The assignment id and the completion ids, in the order the page shows them."""
    return int(ACTION.search(html).group(1)), [int(cid) for cid in TIER_FIELD.findall(html)]


def open_task(client: TestClient, project: dict) -> tuple[int, list[int], str]:
    page = client.get(f"/label?project_id={project['id']}")
    assert page.status_code == 200, page.text
    assignment_id, ids = task_of(page.text)
    return assignment_id, ids, page.text


def post_ranking(client, csrf, assignment_id, tiers: dict[int, int], headers=None, **fields):
    data = {"csrf_token": csrf, **{f"tier_{cid}": str(tier) for cid, tier in tiers.items()}, **fields}
    return client.post(
        f"/label/{assignment_id}/ranking", data=data, headers=headers or {}, follow_redirects=False
    )


def counts(db) -> tuple[int, int]:
    db.expire_all()
    return db.scalar(select(func.count(Ranking.id))), db.scalar(select(func.count(Comparison.id)))


def upload(client: TestClient, admin: Account, project_id: int, *records: dict) -> None:
    response = client.post(
        f"/api/v1/projects/{project_id}/prompts",
        content="".join(json.dumps(r) + "\n" for r in records).encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text


# --- the task as shown ---------------------------------------------------------------------------


def test_the_task_shows_chat_instructions_flags_and_escaped_text(client, admin, labeler) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    upload(client, admin, project["id"], {"messages": CHAT, "completions": [XSS, CODE]})
    page = client.get(f"/label?project_id={project['id']}")
    assert page.status_code == 200
    html = page.text

    # Untrusted text is escaped, never markup: no <script> from the completion, no <b> from the prompt.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html and "<script>alert" not in html
    assert "Say hi &lt;b&gt;loudly&lt;/b&gt;." in html and "<b>loudly</b>" not in html
    # A fenced code block stays text (fences included), in a <pre> of its own, never run or rendered.
    assert f'<pre class="untrusted__code"><code>{CODE}</code></pre>' in html

    # Every chat turn, with its role.
    turns = re.findall(
        r'<li class="chat__turn chat__turn--(\w+)">\s*<span class="chat__role">(\w+)</span>', html
    )
    assert turns == [("system", "system"), ("user", "user"), ("assistant", "assistant"), ("user", "user")]
    for message in ("You are a terse assistant.", "hi", "Now show me code."):
        assert message in html

    # The instructions panel (sanitised Markdown), open by default, and the flags for each completion.
    assert re.search(r'<details class="label-instructions" data-instructions open>', html)
    assert "<h1>Rank by helpfulness</h1>" in html
    assignment_id, ids = task_of(html)
    assert len(ids) == 2
    for cid in ids:
        for flag in ("unsafe", "nonsense"):
            assert f'name="flag_{cid}" value="{flag}"' in html
    assert 'name="none_acceptable"' in html and 'name="seconds_spent"' in html
    assert f'formaction="/label/{assignment_id}/skip"' in html
    # Selects start at the shown position; the page says nothing about which model wrote what.
    assert re.search(rf'name="tier_{ids[0]}"[^>]*>\s*<option value="1" selected>', html)
    assert re.search(
        rf'name="tier_{ids[1]}"[^>]*>\s*<option value="1">1</option>\s*<option value="2" selected>', html
    )
    assert "model" not in re.sub(r"<[^>]*>", "", html.split('id="label-form"')[1]).lower()


def test_progress_and_nothing_left(client, admin, labeler, project) -> None:
    page = client.get(f"/label?project_id={project['id']}")
    assert re.search(r"Ranked today</dt><dd[^>]*>0</dd>", page.text)
    assert re.search(r"Left in project</dt><dd[^>]*>3</dd>", page.text), "three prompts, this one included"
    empty = create_project(client, admin, name="empty-project")
    page = client.get(f"/label?project_id={empty['id']}")
    assert page.status_code == 200
    assert "Nothing left to rank" in page.text and 'id="label-form"' not in page.text
    assert client.get("/label?project_id=999").status_code == 404


def test_the_scripts_are_local_and_sortable_is_the_pinned_one(client, labeler, project) -> None:
    page = client.get(f"/label?project_id={project['id']}").text
    for path in ("js/Sortable.min.js", "js/label.js"):
        assert f'<script src="{static_url(path)}" defer></script>' in page
        assert client.get(static_url(path)).status_code == 200, path
    vendored = (PROJECT_ROOT / "static" / "VENDORED.md").read_text()
    row = next(line for line in vendored.splitlines() if line.startswith("| `js/Sortable.min.js`"))
    digest = hashlib.sha256((PROJECT_ROOT / "static/js/Sortable.min.js").read_bytes()).hexdigest()
    assert f"`{digest}`" in row and "| 1.15.7 |" in row and "| MIT |" in row
    assert (PROJECT_ROOT / "static/js/Sortable.min.js").read_text().startswith("/*! Sortable 1.15.7 - MIT")


# --- ranking without JavaScript (selects), and with htmx -----------------------------------------


def test_a_no_js_form_post_stores_the_tiers_and_redirects(client, labeler, project, db) -> None:
    account, csrf = labeler
    assignment_id, (a, b, c, d), _ = open_task(client, project)
    response = post_ranking(
        client,
        csrf,
        assignment_id,
        {a: 2, b: 1, c: 2, d: 3},  # b best, a and c tied, d last
        **{f"flag_{d}": ["nonsense", "unsafe"], "project_id": str(project["id"]), "seconds_spent": "42.5"},
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/label?project_id={project['id']}&notice=ranked"
    assert counts(db) == (1, 5), "C(4,2) = 6 pairs, minus the tied one"
    ranking = db.scalar(select(Ranking))
    assert ranking.tiers == [[b], [a, c], [d]]
    assert ranking.flags == {str(d): ["nonsense", "unsafe"]}
    assert ranking.none_acceptable is False and ranking.seconds_spent == 42.5
    assert ranking.labeler_id == account.user_id
    assert db.get(Assignment, assignment_id).status == "submitted"
    follow = client.get(response.headers["location"])
    assert "Ranking saved." in follow.text and task_of(follow.text)[0] != assignment_id


def test_equal_numbers_tie_and_gaps_do_not_matter(client, labeler, project, db) -> None:
    _, csrf = labeler
    assignment_id, (a, b, c, d), _ = open_task(client, project)
    response = post_ranking(client, csrf, assignment_id, {a: 4, b: 4, c: 1, d: 4}, none_acceptable="1")
    assert response.status_code == 303
    assert response.headers["location"] == "/label?notice=ranked", "no project chosen: any project next"
    ranking = db.scalar(select(Ranking))
    assert ranking.tiers == [[c], [a, b, d]] and ranking.none_acceptable is True
    assert counts(db) == (1, 3)
    assert 0 <= ranking.seconds_spent < 60, "without JS the time comes from when the task was handed out"


def test_an_htmx_post_returns_the_next_task_fragment(client, labeler, project, db) -> None:
    _, csrf = labeler
    assignment_id, ids, _ = open_task(client, project)
    tiers = {cid: position + 1 for position, cid in enumerate(ids)}
    response = post_ranking(client, csrf, assignment_id, tiers, headers=HTMX, project_id=str(project["id"]))
    assert response.status_code == 200, response.text
    fragment = response.text
    assert fragment.lstrip().startswith('<section id="label-task"'), "the fragment, not a whole page"
    assert "<html" not in fragment and '<header class="topbar"' not in fragment
    next_id, next_ids = task_of(fragment)
    assert next_id != assignment_id and set(next_ids).isdisjoint(ids)
    assert "Saved: 6 comparisons." in fragment
    assert re.search(r"Ranked today</dt><dd[^>]*>1</dd>", fragment), "the progress is updated too"
    assert re.search(r"Left in project</dt><dd[^>]*>2</dd>", fragment)
    assert counts(db) == (1, 6)
    assert db.scalar(select(Ranking)).tiers == [[cid] for cid in ids]


def test_the_last_task_then_nothing_left(client, labeler, project) -> None:
    _, csrf = labeler
    for _ in range(3):
        assignment_id, ids, _page = open_task(client, project)
        response = post_ranking(client, csrf, assignment_id, dict.fromkeys(ids, 1), headers=HTMX)
        assert response.status_code == 200
    assert "Nothing left to rank" in response.text and "Saved: 0 comparisons." in response.text


# --- refusals write nothing ----------------------------------------------------------------------


def test_a_tampered_form_is_refused_with_422_and_nothing_is_written(client, labeler, project, db) -> None:
    _, csrf = labeler
    assignment_id, (a, b, c, d), _ = open_task(client, project)
    missing = post_ranking(client, csrf, assignment_id, {a: 1, b: 2, c: 3})  # d's field removed
    assert missing.status_code == 422
    assert "missing ids [" in missing.text and str(d) in missing.text
    assert "Your ranking was not saved" in missing.text
    assert task_of(missing.text)[0] == assignment_id, "the same task comes back to fix"

    unknown_flag = post_ranking(
        client, csrf, assignment_id, {a: 1, b: 2, c: 3, d: 4}, headers=HTMX, **{f"flag_{a}": "boring"}
    )
    assert unknown_flag.status_code == 422
    assert unknown_flag.text.lstrip().startswith('<section id="label-task"')
    assert "not flags of this project" in unknown_flag.text

    extra = post_ranking(client, csrf, assignment_id, {a: 1, b: 2, c: 3, d: 4, 999_999: 5})
    assert extra.status_code == 422 and "not in this assignment" in extra.text
    not_a_number = post_ranking(client, csrf, assignment_id, {a: 1, b: 2, c: 3}, **{f"tier_{d}": "best"})
    assert not_a_number.status_code == 422 and f"tier_{d}" in not_a_number.text

    assert counts(db) == (0, 0)
    db.expire_all()
    assert db.get(Assignment, assignment_id).status == "live"


def test_a_refused_form_comes_back_as_the_labeler_left_it(client, labeler, project) -> None:
    _, csrf = labeler
    assignment_id, (a, b, c, d), _ = open_task(client, project)
    response = post_ranking(
        client,
        csrf,
        assignment_id,
        {a: 3, b: 1, c: 1, d: 2, 999_999: 4},
        none_acceptable="1",
        **{f"flag_{a}": "unsafe"},
    )
    assert response.status_code == 422
    assert task_of(response.text)[1] == [b, c, d, a], "cards in the order of the ranks sent"
    assert re.search(rf'name="flag_{a}" value="unsafe" checked', response.text)
    assert re.search(r'name="none_acceptable" value="1" checked', response.text)


def test_another_labelers_assignment_is_403(client, labeler, project, make_account, db) -> None:
    _, csrf = labeler
    other = make_account("labeler")
    task = client.get(
        "/api/v1/tasks/next", params={"project_id": project["id"]}, headers=other.headers
    ).json()
    tiers = {c["id"]: i + 1 for i, c in enumerate(task["completions"])}
    response = post_ranking(client, csrf, task["assignment_id"], tiers)
    assert response.status_code == 403
    assert "another labeler" in response.text
    skip = client.post(f"/label/{task['assignment_id']}/skip", data={"csrf_token": csrf})
    assert skip.status_code == 403
    assert counts(db) == (0, 0)
    db.expire_all()
    assert db.get(Assignment, task["assignment_id"]).status == "live"


def test_an_expired_task_says_so_and_offers_the_next(client, labeler, project, db) -> None:
    _, csrf = labeler
    assignment_id, ids, _ = open_task(client, project)
    db.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id)
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    db.commit()
    tiers = {cid: 1 for cid in ids}
    response = post_ranking(client, csrf, assignment_id, tiers, headers=HTMX, project_id=str(project["id"]))
    assert response.status_code == 409
    assert "This task can no longer be ranked" in response.text and "expired" in response.text
    assert (
        f'hx-get="/label?project_id={project["id"]}"' in response.text
        and "Get the next task" in response.text
    )
    assert 'id="label-form"' not in response.text
    assert counts(db) == (0, 0)
    page = post_ranking(client, csrf, assignment_id, tiers)  # without JS: the whole page, same message
    assert page.status_code == 409 and "<html" in page.text and "Get the next task" in page.text


def test_a_second_submission_is_409(client, labeler, project, db) -> None:
    _, csrf = labeler
    assignment_id, ids, _ = open_task(client, project)
    tiers = {cid: i + 1 for i, cid in enumerate(ids)}
    assert post_ranking(client, csrf, assignment_id, tiers).status_code == 303
    again = post_ranking(client, csrf, assignment_id, dict.fromkeys(ids, 1))
    assert again.status_code == 409 and "already submitted" in again.text
    assert counts(db) == (1, 6)
    assert db.scalar(select(Ranking)).tiers == [[cid] for cid in ids]


def test_posting_without_the_csrf_token_is_refused(client, labeler, project, db) -> None:
    assignment_id, ids, _ = open_task(client, project)
    response = client.post(
        f"/label/{assignment_id}/ranking", data={f"tier_{cid}": "1" for cid in ids}, follow_redirects=False
    )
    assert response.status_code == 403
    assert counts(db) == (0, 0)


# --- skip, roles, home ---------------------------------------------------------------------------


def test_skip_without_js_and_with_htmx(client, labeler, project, db) -> None:
    _, csrf = labeler
    first, first_ids, _ = open_task(client, project)
    response = client.post(
        f"/label/{first}/skip",
        data={"csrf_token": csrf, "project_id": str(project["id"])},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/label?project_id={project['id']}&notice=skipped"
    db.expire_all()
    assert db.get(Assignment, first).status == "skipped"
    second, second_ids, _ = open_task(client, project)
    assert second != first and set(second_ids).isdisjoint(first_ids), "a skipped prompt does not come back"

    fragment = client.post(f"/label/{second}/skip", data={"csrf_token": csrf}, headers=HTMX)
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith('<section id="label-task"')
    assert "Skipped." in fragment.text and task_of(fragment.text)[0] not in (first, second)
    assert counts(db) == (0, 0)


def test_only_labelers_rank(client, admin, make_account, project) -> None:
    assert client.get("/label", follow_redirects=False).status_code == 303, "anonymous: to the login page"
    browser_login(client, admin)
    assert client.get("/label").status_code == 403
    client.cookies.clear()
    browser_login(client, make_account("researcher"))
    assert client.get(f"/label?project_id={project['id']}").status_code == 403


def test_the_labeler_home_links_to_the_ranking_screen(client, admin, labeler, project) -> None:
    create_project(client, admin, name="not-yet")
    home = client.get("/")
    assert home.status_code == 200
    assert f'href="/label?project_id={project["id"]}"' in home.text and "Start labeling" in home.text
    assert re.search(r'<span class="task-list__left">3</span> tasks left for you', home.text)
    assert "No tasks yet" in home.text, "the project without prompts has nothing to start"
    open_task(client, project)
    assert "Resume labeling" in client.get("/").text


# --- generation jobs on the project page (admin) -------------------------------------------------


def admin_csrf(client: TestClient, admin: Account) -> str:
    return browser_login(client, admin)


def jobs_of(db, project_id: int) -> list[Job]:
    db.expire_all()
    return list(db.scalars(select(Job).where(Job.project_id == project_id).order_by(Job.id)))


def test_generate_queues_one_job_and_the_card_polls_while_it_is_active(client, admin, db) -> None:
    project = create_project(client, admin)
    upload(client, admin, project["id"], {"prompt": "needs completions"})
    csrf = admin_csrf(client, admin)
    page = client.get(f"/projects/{project['id']}")
    assert 'id="project-jobs"' in page.text and "Generate completions" in page.text
    assert 'hx-trigger="every 2s"' not in page.text, "no job: no polling"
    assert "1</strong> prompt still needs completions" in page.text

    first = client.post(
        f"/projects/{project['id']}/generate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert first.status_code == 303
    assert first.headers["location"] == f"/projects/{project['id']}?notice=generation_queued#project-jobs"
    second = client.post(
        f"/projects/{project['id']}/generate", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert second.headers["location"].endswith("notice=generation_active#project-jobs")
    jobs = jobs_of(db, project["id"])
    assert [(job.kind, job.status) for job in jobs] == [("generate", "queued")], "one job, not two"

    page = client.get(second.headers["location"])
    assert "already queued or running" in page.text
    assert f'hx-get="/projects/{project["id"]}/jobs" hx-trigger="every 2s"' in page.text
    fragment = client.get(f"/projects/{project['id']}/jobs", headers=HTMX)
    assert fragment.status_code == 200 and fragment.text.lstrip().startswith('<section id="project-jobs"')
    assert 'hx-trigger="every 2s"' in fragment.text and "Generating…" in fragment.text
    assert 'id="project-counts" class="stats" hx-swap-oob="true"' in fragment.text
    assert 'id="project-prompts"' not in fragment.text, "the prompt table is refreshed once the job is done"


def test_cancel_and_retry_buttons(client, admin, db) -> None:
    project = create_project(client, admin)
    csrf = admin_csrf(client, admin)
    htmx = client.post(f"/projects/{project['id']}/generate", data={"csrf_token": csrf}, headers=HTMX)
    assert htmx.status_code == 200 and "Generation queued" in htmx.text
    job = jobs_of(db, project["id"])[0]
    assert f"/projects/{project['id']}/jobs/{job.id}/cancel" in htmx.text
    assert f"/jobs/{job.id}/retry" not in htmx.text

    cancelled = client.post(
        f"/projects/{project['id']}/jobs/{job.id}/cancel", data={"csrf_token": csrf}, headers=HTMX
    )
    assert cancelled.status_code == 200 and "The job was cancelled." in cancelled.text
    assert 'hx-trigger="every 2s"' not in cancelled.text, "nothing active: the polling stops"
    assert 'id="project-prompts" class="card card--flush" hx-swap-oob="true"' in cancelled.text
    assert f"/jobs/{job.id}/retry" in cancelled.text and jobs_of(db, project["id"])[0].status == "cancelled"

    again = client.post(
        f"/projects/{project['id']}/jobs/{job.id}/cancel", data={"csrf_token": csrf}, headers=HTMX
    )
    assert again.status_code == 409 and "nothing to cancel" in again.text

    retried = client.post(
        f"/projects/{project['id']}/jobs/{job.id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert retried.status_code == 303 and retried.headers["location"].endswith(
        "notice=job_retried#project-jobs"
    )
    assert jobs_of(db, project["id"])[0].status == "queued"
    assert 'hx-trigger="every 2s"' in client.get(f"/projects/{project['id']}/jobs").text

    refused = client.post(
        f"/projects/{project['id']}/jobs/{job.id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert refused.status_code == 409 and "<html" in refused.text
    assert "Only a failed or cancelled job can be retried." in refused.text


def test_a_failed_job_shows_its_error_metrics_and_retry(client, admin, make_account, db) -> None:
    project = create_project(client, admin)
    job_id = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers).json()["job_id"]
    worker = make_account("worker")
    claim = {"kinds": ["generate"], "worker": "w1"}
    attempt = client.post("/api/v1/worker/claim", json=claim, headers=worker.headers).json()["attempts"]
    event = {
        "attempt": attempt,
        "progress": 0.5,
        "metrics": {"generate/completions": 1200, "generate/tokens_per_second": 85.3},
    }
    assert client.post(f"/api/v1/jobs/{job_id}/events", json=event, headers=worker.headers).status_code == 204

    admin_csrf(client, admin)
    running = client.get(f"/projects/{project['id']}/jobs").text
    assert "badge--job-running" in running and 'aria-valuenow="50"' in running
    assert "<dt>completions</dt><dd>1,200</dd>" in running and "<dt>tokens/s</dt><dd>85.3</dd>" in running
    assert 'hx-trigger="every 2s"' in running

    error = "CUDA out of memory <oops>"
    assert (
        client.post(
            f"/api/v1/jobs/{job_id}/fail", json={"attempt": attempt, "error": error}, headers=worker.headers
        ).status_code
        == 200
    )
    failed = client.get(f"/projects/{project['id']}/jobs").text
    assert "badge--job-failed" in failed and "CUDA out of memory &lt;oops&gt;" in failed
    assert f"/jobs/{job_id}/retry" in failed and f"/jobs/{job_id}/cancel" not in failed
    assert 'hx-trigger="every 2s"' not in failed


def test_a_job_of_another_project_is_404(client, admin, db) -> None:
    mine = create_project(client, admin)
    other = create_project(client, admin, name="other-project")
    job_id = client.post(f"/api/v1/projects/{other['id']}/generate", headers=admin.headers).json()["job_id"]
    csrf = admin_csrf(client, admin)
    for action in ("cancel", "retry"):
        response = client.post(f"/projects/{mine['id']}/jobs/{job_id}/{action}", data={"csrf_token": csrf})
        assert response.status_code == 404, action
        assert (
            client.post(f"/projects/{mine['id']}/jobs/999999/{action}", data={"csrf_token": csrf}).status_code
            == 404
        )
    assert jobs_of(db, other["id"])[0].status == "queued", "nothing changed"


def test_only_admins_generate(client, admin, make_account, db) -> None:
    project = create_project(client, admin)
    csrf = browser_login(client, make_account("researcher"))
    page = client.get(f"/projects/{project['id']}")
    assert page.status_code == 200 and 'id="project-jobs"' not in page.text
    assert client.post(f"/projects/{project['id']}/generate", data={"csrf_token": csrf}).status_code == 403
    assert client.get(f"/projects/{project['id']}/jobs").status_code == 403
    client.cookies.clear()
    csrf = browser_login(client, make_account("labeler"))
    assert client.post(f"/projects/{project['id']}/generate", data={"csrf_token": csrf}).status_code == 403
    assert jobs_of(db, project["id"]) == []
