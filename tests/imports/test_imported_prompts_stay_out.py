"""Imported preference data is for export and training: labelers never get it, generation never fills it."""

import json

from tests.conftest import create_project


def test_imported_prompts_are_not_labeled_or_generated(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    pairs = "".join(
        json.dumps({"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}) + "\n"
        for i in range(3)
    )
    response = client.post(
        f"/api/v1/projects/{project['id']}/import",
        params={"format": "pairs"},
        content=pairs.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text

    labeler = make_account("labeler")
    task = client.get("/api/v1/tasks/next", params={"project_id": project["id"]}, headers=labeler.headers)
    assert task.status_code == 204, "imported prompts are never handed to labelers"
    listed = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    assert {p["status"] for p in listed} == {"imported"}
    pending = client.get(
        f"/api/v1/projects/{project['id']}/prompts", params={"status": "pending"}, headers=admin.headers
    ).json()["items"]
    assert pending == [], "a generate job reads pending prompts: imported ones are not among them"
    counts = client.get(f"/api/v1/projects/{project['id']}", headers=admin.headers).json()["counts"]
    assert counts == {"prompts": 3, "completions": 6, "prompts_ready": 0}
    exported = client.get(f"/api/v1/projects/{project['id']}/export", headers=admin.headers)
    assert len(exported.text.splitlines()) == 3, "but they export like labeled data"
