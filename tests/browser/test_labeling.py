"""The ranking screen in a real headless Chromium: drag and drop, ties and flags by keyboard, and the
next task swapped in without a page load; then the database must hold exactly the ranking made.

Needs Playwright's Python package and a system Chromium at /usr/bin/chromium (never downloaded).
"""

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from app.labeling.models import Comparison, Ranking
from tests.browser.chromium import logged_in, needs_chromium
from tests.conftest import Account, create_project
from tests.labeling.conftest import seed_ready_prompts

pytestmark = needs_chromium


@pytest.fixture
def project(client, admin) -> dict:
    project = create_project(client, admin, completions_per_prompt=4, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=3, k=4)
    return project


@pytest.fixture
def page(browser, live_server: str, make_account) -> Iterator:
    """A labeler's page, logged in through the real login form."""
    labeler: Account = make_account("labeler")
    with logged_in(browser, live_server, labeler) as tab:
        yield tab


def open_label_page(page, project: dict) -> tuple[int, list[int]]:
    page.goto(f"/label?project_id={project['id']}")
    page.wait_for_selector("#label-task.has-js .rank-card")
    # A marker that only survives if the next task is swapped in rather than loaded as a new page.
    page.evaluate("window.__marker = 1")
    return current_task(page)


def current_task(page) -> tuple[int, list[int]]:
    assignment = int(page.get_attribute("#label-task", "data-assignment-id"))
    return assignment, order(page)


def order(page) -> list[int]:
    return page.eval_on_selector_all(".rank-card", "cards => cards.map(c => Number(c.dataset.completionId))")


def selects(page) -> dict[int, int]:
    """What the form will send: the hidden selects label.js keeps in step with the screen."""
    return {
        int(name.removeprefix("tier_")): int(value)
        for name, value in page.eval_on_selector_all(
            "select[name^='tier_']", "els => els.map(e => [e.name, e.value])"
        )
    }


def card(page, completion_id: int):
    return page.locator(f".rank-card[data-completion-id='{completion_id}']")


def drag(page, source_id: int, target_id: int) -> None:
    """Drag a card by its handle onto the upper part of another card, with real pointer moves."""
    handle = card(page, source_id).locator(".rank-card__handle").bounding_box()
    target = card(page, target_id).bounding_box()
    start_x, start_y = handle["x"] + handle["width"] / 2, handle["y"] + 24
    end_x, end_y = target["x"] + 28, target["y"] + 10
    page.mouse.move(start_x, start_y)
    page.mouse.down()
    page.mouse.move(start_x, start_y + 8, steps=4)  # past SortableJS's tolerance: the drag starts
    page.mouse.move(end_x, end_y, steps=25)
    page.mouse.move(end_x, end_y - 4, steps=4)
    page.mouse.up()


def wait_for_next_task(page, previous: int) -> int:
    # Locator waits, not wait_for_function: the page's CSP forbids the eval that one needs.
    expect(page.locator("#label-task[data-assignment-id]")).to_have_count(1)
    expect(page.locator("#label-task")).not_to_have_attribute("data-assignment-id", str(previous))
    expect(page.locator(".htmx-swapping, .htmx-settling, .htmx-request")).to_have_count(0)
    # Set up like the first task (drag, keys, hidden selects), also once htmx has settled it.
    page.wait_for_timeout(50)
    assert page.evaluate("document.getElementById('label-task').classList.contains('has-js')")
    assert page.is_hidden("#label-task select[name^='tier_']")
    return current_task(page)[0]


def stored(db, assignment_id: int) -> tuple[Ranking, int]:
    db.expire_all()
    ranking = db.scalar(select(Ranking).where(Ranking.assignment_id == assignment_id))
    assert ranking is not None, "no ranking was stored"
    comparisons = db.scalar(select(func.count(Comparison.id)).where(Comparison.ranking_id == ranking.id))
    return ranking, comparisons


def as_sets(tiers: list[list[int]]) -> list[set[int]]:
    return [set(tier) for tier in tiers]


def test_drag_tie_flag_and_submit_without_a_page_load(page, project, db) -> None:
    assignment, (a, b, c, d) = open_label_page(page, project)
    assert page.is_hidden(f"select[name='tier_{a}']"), "with JS the selects give way to the list"

    # 1. Drag the last card to the top with the mouse.
    drag(page, d, a)
    expect(page.locator(".rank-card").first).to_have_attribute("data-completion-id", str(d))
    assert order(page) == [d, a, b, c]
    assert page.inner_text(f".rank-card[data-completion-id='{d}'] [data-tier]") == "1"
    expect(page.locator("#label-announcer")).to_contain_text("moved to rank 1")

    # 2. Tie b with the rank above (a) with the keyboard, 3. flag c with the digit 1 (the first flag).
    card(page, b).focus()
    page.keyboard.press("t")
    card(page, c).focus()
    page.keyboard.press("1")
    assert page.is_checked(f"input[name='flag_{c}'][value='unsafe']")
    tiers_shown = page.eval_on_selector_all(".rank-card [data-tier]", "els => els.map(e => e.textContent)")
    assert tiers_shown == ["1", "2", "2", "3"]
    assert selects(page) == {d: 1, a: 2, b: 2, c: 3}
    expect(page.locator("#label-announcer")).to_contain_text("unsafe")

    # 4. Submit: the next task replaces this one in place.
    page.click("#label-submit")
    next_assignment = wait_for_next_task(page, assignment)
    assert next_assignment != assignment
    assert page.evaluate("window.__marker") == 1, "the page was reloaded instead of swapped"
    assert page.inner_text("[data-progress-today]") == "1"
    assert "Saved: 5 comparisons." in page.inner_text(".label-bar__saved")

    ranking, comparisons = stored(db, assignment)
    assert as_sets(ranking.tiers) == [{d}, {a, b}, {c}]
    assert comparisons == 5  # C(4,2) = 6 pairs minus the tied one
    assert ranking.flags == {str(c): ["unsafe"]}
    assert ranking.seconds_spent is not None and ranking.seconds_spent > 0

    # 5. Dragging works on the swapped-in task too (SortableJS set up again after the swap).
    _, (e, f, g, h) = current_task(page)
    drag(page, g, e)
    expect(page.locator(".rank-card").first).to_have_attribute("data-completion-id", str(g))
    assert order(page) == [g, e, f, h] and selects(page) == {g: 1, e: 2, f: 3, h: 4}


def test_ranking_with_the_keyboard_alone(page, project, db) -> None:
    assignment, (a, b, c, d) = open_label_page(page, project)

    # Tab to the first completion.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('rank-card')"):
            break
    assert page.evaluate("Number(document.activeElement.dataset.completionId)") == a

    page.keyboard.press("ArrowDown")  # b a c d
    page.keyboard.press("ArrowDown")  # b c a d
    page.keyboard.press("j")  # b c d a
    page.keyboard.press("ArrowUp")  # b c a d
    assert order(page) == [b, c, a, d]
    assert page.evaluate("Number(document.activeElement.dataset.completionId)") == a, "focus stays on it"
    page.keyboard.press("t")  # a ties with c: b | c a | d
    assert selects(page) == {b: 1, c: 2, a: 2, d: 3}
    page.keyboard.press("u")  # and unties: b | c | a | d
    assert selects(page) == {b: 1, c: 2, a: 3, d: 4}
    page.keyboard.press("t")
    assert selects(page) == {b: 1, c: 2, a: 2, d: 3}
    expect(page.locator("#label-announcer")).to_contain_text("tied")

    page.keyboard.press("?")  # the help opens and closes from the keyboard
    page.wait_for_selector("#label-help[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#label-help:not([open])", state="attached")

    # Tab on to the submit button and press Enter.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "label-submit":
            break
    assert page.evaluate("document.activeElement.id") == "label-submit"
    page.keyboard.press("Enter")
    wait_for_next_task(page, assignment)
    assert page.evaluate("window.__marker") == 1
    assert page.evaluate("document.activeElement.classList.contains('rank-card')"), (
        "the next task's first completion has the focus, ready for the keyboard"
    )

    ranking, comparisons = stored(db, assignment)
    assert as_sets(ranking.tiers) == [{b}, {c, a}, {d}]
    assert comparisons == 5
    assert ranking.flags == {}
