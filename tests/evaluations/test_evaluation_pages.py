"""The evaluation pages: the card the project page loads, the form that starts a round (CSRF, errors
back in the form), a round's page with its win rate, and the link back from a round's project."""

from sqlalchemy import func, select

from app.evaluations.models import EvaluationRound
from tests.conftest import browser_login
from tests.evaluations.conftest import claim, parent_project, post_completions, rank_round, register_policy

HTMX = {"HX-Request": "true"}


def test_start_a_round_in_the_browser_and_read_its_win_rate(
    client, admin, make_account, session_factory, db
) -> None:
    parent = parent_project(client, admin, n=5)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/job-2")
    reward = register_policy(session_factory, project_id=parent["id"], artifact="reward/job-1", kind="reward")
    csrf = browser_login(client, admin)

    page = client.get(f"/projects/{parent['id']}")
    assert f'hx-get="/projects/{parent["id"]}/evaluations"' in page.text, "the project page loads the card"
    card = client.get(f"/projects/{parent['id']}/evaluations", headers=HTMX)
    assert card.status_code == 200 and "<html" not in card.text
    assert "No rounds yet" in card.text and f'<option value="{candidate}"' in card.text
    assert f'<option value="{reward}"' not in card.text, "only policy versions are candidates"

    url = f"/projects/{parent['id']}/evaluations"
    form = {"candidate": str(candidate), "baseline": "", "prompts": "5", "rankings_per_prompt": "1"}
    assert client.post(url, data=form, follow_redirects=False).status_code == 403, "no CSRF token"
    refused = client.post(url, data={**form, "candidate": str(reward), "csrf_token": csrf})
    assert refused.status_code == 422 and "is a reward model" in refused.text
    assert 'value="5"' in refused.text, "the form comes back as it was typed"
    assert db.scalar(select(func.count(EvaluationRound.id))) == 0

    started = client.post(url, data={**form, "csrf_token": csrf}, follow_redirects=False)
    assert started.status_code == 303
    round_id = int(started.headers["location"].split("/")[2].split("?")[0])
    round_page = client.get(started.headers["location"])
    assert "Evaluation round 1" in round_page.text and "generating" in round_page.text
    assert "Evaluation round started" in round_page.text
    polling = client.get(url, headers=HTMX)
    assert 'hx-trigger="every 3s"' in polling.text and "Round 1" in polling.text

    round_ = client.get(f"/api/v1/evaluations/{round_id}", headers=admin.headers).json()
    worker = make_account("worker")
    job = claim(client, worker)
    prompts = client.get(
        f"/api/v1/projects/{round_['round_project_id']}/prompts", headers=admin.headers
    ).json()["items"]
    items = [
        {
            "prompt_id": p["id"],
            "completions": [
                {"text": f"text {p['id']}.{n}", "model": spec}
                for n, spec in enumerate((round_["candidate"], round_["baseline"]))
            ],
        }
        for p in prompts
    ]
    post_completions(client, worker, job, items)
    client.post(
        f"/api/v1/jobs/{job['id']}/complete", json={"attempt": job["attempts"]}, headers=worker.headers
    )
    verdicts = ["win", "win", "tie", "loss", "win"]
    rank_round(client, admin, make_account("labeler"), round_, lambda i: verdicts[i])

    done = client.get(f"/evaluations/{round_id}")
    assert "70.0%" in done.text and "29.9\u201392.7%" in done.text and "3 wins, 1 tie, 1 loss" in done.text
    card = client.get(url, headers=HTMX)
    assert "hx-trigger" not in card.text, "nothing generating: the card stops polling"
    assert "70.0%" in card.text and parent["name"] in card.text

    child = client.get(f"/projects/{round_['round_project_id']}/evaluations", headers=HTMX)
    assert f'href="/projects/{parent["id"]}"' in child.text and "evaluation round 1" in child.text
    assert "Start evaluation round" not in child.text, "a round is not evaluated itself"
    listing = client.get("/projects")
    assert "helpfulness-v1 — evaluation 1" in listing.text


def test_researchers_read_labelers_do_not(client, admin, make_account, session_factory) -> None:
    parent = parent_project(client, admin, n=2)
    candidate = register_policy(session_factory, project_id=parent["id"], artifact="ppo/a")
    round_ = client.post(
        f"/api/v1/projects/{parent['id']}/evaluations", json={"candidate": candidate}, headers=admin.headers
    ).json()
    browser_login(client, make_account("researcher"))
    page = client.get(f"/projects/{parent['id']}/evaluations")
    assert page.status_code == 200 and "Round 1" in page.text and "Start evaluation round" not in page.text
    assert client.get(f"/evaluations/{round_['id']}").status_code == 200
    client.cookies.clear()
    browser_login(client, make_account("labeler"))
    assert client.get(f"/projects/{parent['id']}/evaluations").status_code == 403
    assert client.get(f"/evaluations/{round_['id']}").status_code == 403
