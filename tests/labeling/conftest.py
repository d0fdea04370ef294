import json

import pytest

from tests.conftest import create_project


def seed_ready_prompts(client, admin, project_id: int, n: int, k: int) -> None:
    body = "".join(
        json.dumps({"prompt": f"question {i}", "completions": [f"answer {i}.{j}" for j in range(k)]}) + "\n"
        for i in range(n)
    )
    response = client.post(
        f"/api/v1/projects/{project_id}/prompts",
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def ready_project(client, admin) -> dict:
    """A project with K=4, two rankings per prompt, and three prompts whose completions are in."""
    project = create_project(
        client, admin, completions_per_prompt=4, rankings_per_prompt=2, flags=["unsafe", "nonsense"]
    )
    seed_ready_prompts(client, admin, project["id"], n=3, k=4)
    return project
