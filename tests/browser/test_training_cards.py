"""A PPO run in a real headless Chromium: started from the project page's form, its run page redraws
its charts and samples from the worker's reports without a page load (htmx polling), stops polling when
the run ends, and its "Generate with it" button makes the new policy the project's generator.

Needs Playwright's Python package and a system Chromium at /usr/bin/chromium (never downloaded).
"""

from tests.browser.chromium import logged_in, needs_chromium
from tests.conftest import create_project
from tests.helpers import registered_reward_model
from tests.labeling.conftest import seed_ready_prompts

pytestmark = needs_chromium


def test_ppo_run_page_updates_live_and_closes_the_loop(
    browser, live_server, client, admin, make_account
) -> None:
    worker = make_account("worker")
    project = create_project(client, admin)
    seed_ready_prompts(client, admin, project["id"], n=6, k=4)
    reward_id = registered_reward_model(client, admin, worker, project["id"])

    with logged_in(browser, live_server, make_account("admin")) as tab:
        tab.goto(f"/projects/{project['id']}")
        tab.select_option("#ppo-rm", str(reward_id))
        tab.fill("#ppo-steps", "3")
        with tab.expect_navigation():
            tab.click("text=Run PPO")
        job_id = int(tab.url.rstrip("/").rsplit("/", 1)[1])
        tab.wait_for_selector("text=waiting for a worker")
        tab.evaluate("window.__marker = 1")  # survives only if the page is never reloaded

        claimed = client.post(
            "/api/v1/worker/claim", json={"kinds": ["ppo"], "worker": "w"}, headers=worker.headers
        ).json()
        assert claimed["id"] == job_id and claimed["config"]["steps"] == 3

        def report(metrics: dict) -> None:
            event = {"attempt": claimed["attempts"], "progress": 0.5, "metrics": metrics}
            client.post(f"/api/v1/jobs/{job_id}/events", json=event, headers=worker.headers)

        report({"step": 1, "reward/score": -0.4, "objective/kl": 0.0})
        report({"step": 2, "reward/score": 0.3, "objective/kl": 0.8})
        sample = {"prompt": [{"role": "user", "content": "Say hi"}], "completion": "<b>hi</b>", "score": 0.7}
        report({"step": 2, "samples": [sample]})
        tab.wait_for_selector("text=Samples at step 2", timeout=15_000)
        assert tab.locator("svg polyline").count() == 2
        assert tab.locator(".sample__text").inner_text() == "<b>hi</b>"  # shown as text, not markup
        assert tab.evaluate("window.__marker") == 1

        done = {"attempt": claimed["attempts"], "artifact": f"ppo/job-{job_id}", "metrics": {}}
        model_id = client.post(f"/api/v1/jobs/{job_id}/complete", json=done, headers=worker.headers).json()[
            "model_id"
        ]
        button = tab.wait_for_selector("text=Generate with it in", timeout=15_000)
        assert tab.locator("[hx-trigger='every 2s']").count() == 0, "a finished run stops polling"
        with tab.expect_navigation():
            button.click()
        assert tab.url.rstrip("/").endswith(f"/projects/{project['id']}")

    generation = client.get(f"/api/v1/projects/{project['id']}", headers=admin.headers).json()["generation"]
    assert generation["model"] == model_id
