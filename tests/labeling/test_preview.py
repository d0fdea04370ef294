"""An admin previews a project's labeling screen: real prompts and completions, the current instructions,
read-only, and nothing handed out."""

import re

from sqlalchemy import func, select

from app.labeling.models import Assignment
from tests.conftest import browser_login, create_project
from tests.labeling.conftest import seed_ready_prompts


def test_an_admin_previews_the_labeling_screen_without_taking_a_task(client, admin, db) -> None:
    project = create_project(client, admin, instructions_md="# Prefer the *clearest* answer")
    seed_ready_prompts(client, admin, project["id"], n=2, k=4)
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}/preview")
    assert page.status_code == 200
    assert "Preview: prompt 1 of 2" in page.text and "nothing here is saved or handed out" in page.text
    assert "question 0" in page.text and all(f"answer 0.{j}" in page.text for j in range(4))
    assert "<em>clearest</em>" in page.text, "the current instructions, rendered"
    assert 'id="label-form"' in page.text and " inert " in page.text, "the form is there, inert"
    next_url = re.search(r'href="(/projects/\d+/preview\?prompt_id=\d+)">next prompt', page.text).group(1)
    second = client.get(next_url)
    assert "Preview: prompt 2 of 2" in second.text and "question 1" in second.text
    db.expire_all()
    assert db.scalar(select(func.count(Assignment.id))) == 0, "no assignment, no slot taken"


def test_a_project_with_nothing_to_label_says_so(client, admin) -> None:
    project = create_project(client, admin)
    browser_login(client, admin)
    page = client.get(f"/projects/{project['id']}/preview")
    assert page.status_code == 200 and "no prompt a labeler could be handed yet" in page.text
