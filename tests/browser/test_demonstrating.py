"""Written answers in a real headless Chromium, with the keyboard alone: a `demonstrate` task started from
a completion and one written from scratch, and the rewrite of the best completion on the ranking screen.
The database must then hold exactly what was typed."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.labeling.models import Demonstration, Ranking
from tests.browser.chromium import logged_in, needs_chromium
from tests.browser.test_labeling import wait_for_next_task
from tests.conftest import Account, create_project
from tests.labeling.conftest import seed_ready_prompts

pytestmark = needs_chromium


@pytest.fixture
def page(browser, live_server: str, make_account) -> Iterator:
    labeler: Account = make_account("labeler")
    with logged_in(browser, live_server, labeler) as tab:
        yield tab


def demonstration(db, assignment_id: int) -> Demonstration:
    db.expire_all()
    found = db.scalar(select(Demonstration).where(Demonstration.assignment_id == assignment_id))
    assert found is not None, "no demonstration was stored"
    return found


def focused(page, attribute: str) -> str | None:
    return page.evaluate(f"document.activeElement && document.activeElement.getAttribute('{attribute}')")


def test_a_demonstration_is_written_with_the_keyboard_alone(page, client, admin, db) -> None:
    project = create_project(
        client, admin, task="demonstrate", completions_per_prompt=2, rankings_per_prompt=1
    )
    seed_ready_prompts(client, admin, project["id"], n=2, k=2)
    page.goto(f"/label?project_id={project['id']}")
    page.wait_for_selector("#label-task.has-js [data-answer]")
    assignment = int(page.get_attribute("#label-task", "data-assignment-id"))
    assert focused(page, "id") == "answer-text", "the answer box has the focus from the start"

    # 1. Back from the answer box to the last "Start from" button, and take that completion.
    for _ in range(6):
        page.keyboard.press("Shift+Tab")
        if focused(page, "data-start-from"):
            break
    start_id = int(focused(page, "data-start-from"))
    start_text = page.evaluate(
        f"document.querySelector('[data-start-from=\"{start_id}\"]').closest('.start-card')"
        ".querySelector('template').content.textContent"
    )
    page.keyboard.press("Enter")
    expect(page.locator("#answer-text")).to_have_value(start_text)
    assert focused(page, "id") == "answer-text"
    assert page.input_value("[data-edited-from]") == str(start_id)

    # 2. Improve it and save with Ctrl+Enter: the next task arrives without a page load.
    page.keyboard.type(" Also: check the units.")
    page.keyboard.press("Control+Enter")
    second = wait_for_next_task(page, assignment)
    demo = demonstration(db, assignment)
    assert demo.text == start_text + " Also: check the units."
    assert demo.edited_from_id == start_id and demo.original_text == start_text
    assert demo.seconds_spent is not None and demo.seconds_spent > 0

    # 3. The next one from scratch: the answer box has the focus again.
    assert focused(page, "id") == "answer-text"
    page.keyboard.type("Line one.")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("Line two.")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".label-empty")).to_contain_text("Nothing left to write")
    demo = demonstration(db, second)
    assert demo.text == "Line one.\nLine two." and demo.edited_from_id is None


def test_the_best_completion_is_rewritten_with_w_while_ranking(page, client, admin, db) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=1, k=3)
    page.goto(f"/label?project_id={project['id']}")
    page.wait_for_selector("#label-task.has-js .rank-card")
    assignment = int(page.get_attribute("#label-task", "data-assignment-id"))
    cards = page.eval_on_selector_all(".rank-card", "cards => cards.map(c => Number(c.dataset.completionId))")
    # Move the second card to the top, then rewrite it: the rewrite starts from the card ranked first.
    page.locator(f".rank-card[data-completion-id='{cards[1]}']").focus()
    page.keyboard.press("ArrowUp")
    page.keyboard.press("w")
    best_text = page.evaluate(
        f"document.querySelector('.rank-card[data-completion-id=\"{cards[1]}\"] template')"
        ".content.textContent"
    )
    expect(page.locator("#rewrite-text")).to_have_value(best_text)
    assert focused(page, "id") == "rewrite-text"
    page.keyboard.type(" Shorter.")
    page.keyboard.press("Control+Enter")
    expect(page.locator(".label-empty")).to_be_visible()
    db.expire_all()
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == assignment))
    assert ranking.tiers[0] == [cards[1]]
    demo = demonstration(db, assignment)
    assert demo.source == "rewrite" and demo.edited_from_id == cards[1]
    assert demo.text == best_text + " Shorter."
