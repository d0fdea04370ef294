"""Exports: rows exactly as API.md shows, filters, streaming formats, roles."""

import io
import json
import urllib.parse

import pyarrow.parquet as pq
import pytest

from tests.conftest import create_project, only_on
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts


def rank(client, labeler, project_id, tiers_of, flags_of=None) -> dict:
    task = client.get("/api/v1/tasks/next", params={"project_id": project_id}, headers=labeler.headers).json()
    ids = [c["id"] for c in task["completions"]]
    body = {"ranking": tiers_of(ids), "flags": flags_of(ids) if flags_of else {}, "seconds_spent": 10}
    response = client.post(
        f"/api/v1/assignments/{task['assignment_id']}/ranking", json=body, headers=labeler.headers
    )
    assert response.status_code == 201, response.text
    return {"task": task, "tiers": body["ranking"], "ranking_id": response.json()["ranking_id"]}


@pytest.fixture
def labeled(client, admin, make_account) -> dict:
    """One prompt (K=3) ranked by two labelers: one strict order with a flag, one with a tie."""
    project = create_project(
        client, admin, completions_per_prompt=3, rankings_per_prompt=2, flags=["unsafe", "nonsense"]
    )
    seed_ready_prompts(client, admin, project["id"], n=1, k=3)
    first, second = make_account("labeler"), make_account("labeler")
    strict = rank(
        client,
        first,
        project["id"],
        lambda ids: [[ids[0]], [ids[1]], [ids[2]]],
        lambda ids: {str(ids[2]): ["unsafe"]},
    )
    tied = rank(client, second, project["id"], lambda ids: [[ids[0], ids[1]], [ids[2]]])
    return {"project": project, "strict": strict, "tied": tied, "first": first, "second": second}


def export(client, account, project_id, **params):
    return client.get(f"/api/v1/projects/{project_id}/export", params=params, headers=account.headers)


def jsonl(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_pairs_rows_are_trl_compatible(client, admin, labeled) -> None:
    response = export(client, admin, labeled["project"]["id"], kind="pairs", format="jsonl")
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["x-preflab-schema-version"] == "2"
    assert "attachment" in response.headers["content-disposition"]
    rows = jsonl(response)
    assert len(rows) == 3 + 2, "C(3,2) strict pairs plus 2 from the tied ranking"
    row = rows[0]
    assert set(row) == {
        "prompt_id",
        "prompt",
        "chosen",
        "rejected",
        "chosen_id",
        "rejected_id",
        "chosen_tier",
        "rejected_tier",
        "tie",
        "none_acceptable",
        "chosen_flags",
        "rejected_flags",
        "ranking_id",
        "labeler",
        "instructions_version",
        "created_at",
    }
    assert row["prompt"] == [{"role": "user", "content": "question 0"}]
    assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
    texts = {c["id"]: c["text"] for c in labeled["strict"]["task"]["completions"]}
    for r in rows:
        assert r["chosen"][0]["content"] == texts[r["chosen_id"]]
        assert r["rejected"][0]["content"] == texts[r["rejected_id"]]
        assert r["chosen_tier"] < r["rejected_tier"]
    assert row["labeler"].startswith("l-") and len(row["labeler"]) == 10
    assert {r["labeler"] for r in rows} != {row["labeler"]}, "two labelers, two pseudonyms"
    assert row["instructions_version"] == 1
    body = response.text
    for account in (labeled["first"], labeled["second"]):
        assert account.username not in body, "no usernames in exports"


def test_pseudonyms_are_stable_and_filterable(client, admin, make_account, labeled) -> None:
    pid = labeled["project"]["id"]
    first = jsonl(export(client, admin, pid))
    researcher = make_account("researcher")
    again = jsonl(export(client, researcher, pid))
    assert [r["labeler"] for r in first] == [r["labeler"] for r in again]
    strict_labeler = next(r["labeler"] for r in first if r["ranking_id"] == labeled["strict"]["ranking_id"])
    only = jsonl(export(client, admin, pid, labelers=strict_labeler))
    assert len(only) == 3 and {r["labeler"] for r in only} == {strict_labeler}
    assert_error(export(client, admin, pid, labelers="l-00000000"), 422)


def test_exclude_flags_and_ties(client, admin, labeled) -> None:
    pid = labeled["project"]["id"]
    ids = [c["id"] for c in labeled["strict"]["task"]["completions"]]
    rows = jsonl(export(client, admin, pid, exclude_flags="unsafe"))
    # In the strict ranking ids[2] was flagged unsafe: its two pairs go; the tied ranking keeps both.
    assert len(rows) == 1 + 2
    assert all(
        ids[2] not in (r["chosen_id"], r["rejected_id"]) or r["ranking_id"] != labeled["strict"]["ranking_id"]
        for r in rows
    )
    with_ties = jsonl(export(client, admin, pid, include_ties="true"))
    ties = [r for r in with_ties if r.get("tie")]
    assert len(with_ties) == 6 and len(ties) == 1
    assert ties[0]["chosen_tier"] == ties[0]["rejected_tier"] == 0
    assert_error(export(client, admin, pid, exclude_flags="rude"), 422)


def test_time_filters(client, admin, labeled) -> None:
    pid = labeled["project"]["id"]
    assert jsonl(export(client, admin, pid, since="2999-01-01T00:00:00Z")) == []
    assert len(jsonl(export(client, admin, pid, until="2999-01-01T00:00:00Z"))) == 5
    assert_error(export(client, admin, pid, since="yesterday"), 422)


def test_rankings_export(client, admin, labeled) -> None:
    rows = jsonl(export(client, admin, labeled["project"]["id"], kind="rankings"))
    assert len(rows) == 2
    strict = next(r for r in rows if r["ranking_id"] == labeled["strict"]["ranking_id"])
    assert strict["ranking"] == labeled["strict"]["tiers"]
    assert [c["id"] for c in strict["completions"]] == [
        c["id"] for c in labeled["strict"]["task"]["completions"]
    ]
    assert strict["flags"] == [{"completion_id": labeled["strict"]["tiers"][2][0], "flags": ["unsafe"]}]
    assert strict["none_acceptable"] is False and strict["seconds_spent"] == 10


def test_parquet_pairs_and_rankings(client, admin, labeled) -> None:
    pid = labeled["project"]["id"]
    response = export(client, admin, pid, kind="pairs", format="parquet")
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert table.schema.metadata[b"preflab.schema_version"] == b"2"
    assert table.num_rows == 5
    assert table.to_pylist() == jsonl(export(client, admin, pid))  # every column (test_export_paths.py)
    rankings = pq.read_table(
        io.BytesIO(export(client, admin, pid, kind="rankings", format="parquet").content)
    )
    assert rankings.to_pylist() == jsonl(export(client, admin, pid, kind="rankings"))


def test_empty_export_is_valid(client, admin) -> None:
    project = create_project(client, admin)
    assert jsonl(export(client, admin, project["id"])) == []
    empty = pq.read_table(io.BytesIO(export(client, admin, project["id"], format="parquet").content))
    assert empty.num_rows == 0 and "chosen" in empty.column_names


def test_roles_and_bad_params(client, admin, make_account, labeled) -> None:
    pid = labeled["project"]["id"]
    assert_error(export(client, labeled["first"], pid), 403, "wrong_role")
    assert export(client, make_account("worker"), pid).status_code == 200, "workers train on exports"
    assert_error(client.get(f"/api/v1/projects/{pid}/export"), 401)
    assert_error(export(client, admin, 9999), 404)
    assert_error(export(client, admin, pid, kind="triples"), 422)
    assert_error(export(client, admin, pid, format="csv"), 422)
    assert_error(export(client, admin, pid, min_agreement=2), 422)


@pytest.mark.parametrize("params", [{}, {"exclude_flags": ["unsafe"]}, {"since": "2000-01-01T00:00:00Z"}])
def test_postgres_copy_path_matches_the_generic_path(engine, app, labeled, params) -> None:
    """On Postgres, JSONL pairs come from COPY; the row-by-row path must produce the same rows."""
    only_on(engine, "postgresql")
    from sqlalchemy.orm import Session

    from app.exports import service
    from app.exports.encoder import Encoder
    from app.exports.schemas import ExportFilters
    from app.projects.models import Project

    with Session(engine) as session:
        project = session.get(Project, labeled["project"]["id"])
        plan = service.plan_export(session, project=project, filters=ExportFilters(**params))

    def normalised(lines: bytes) -> list[dict]:
        return [json.loads(line) for line in lines.splitlines() if line]

    with engine.connect() as connection:
        fast = b"".join(service.iter_jsonl(connection, plan))
    with engine.connect() as connection:
        generic = b"".join(service._pair_lines(connection, plan, Encoder(plan)))
    assert normalised(fast) == normalised(generic) and len(normalised(fast)) > 0


def test_min_agreement_keeps_prompts_that_agree(client, admin, make_account) -> None:
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=2)
    seed_ready_prompts(client, admin, project["id"], n=2, k=3)
    prompts = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    agreed_ids = {c["id"] for c in prompts[0]["completions"]}  # both labelers order this prompt alike
    first, second = make_account("labeler"), make_account("labeler")
    for _ in range(2):
        rank(client, first, project["id"], lambda ids: [[cid] for cid in sorted(ids)])
        rank(
            client,
            second,
            project["id"],
            lambda ids: [[cid] for cid in sorted(ids, reverse=not set(ids) <= agreed_ids)],
        )
    everything = jsonl(export(client, admin, project["id"]))
    agreeing = jsonl(export(client, admin, project["id"], min_agreement=0.5))
    assert len(everything) == 12  # 2 prompts x 2 rankings x C(3,2)
    assert len(agreeing) == 6 and {r["prompt_id"] for r in agreeing} == {prompts[0]["id"]}


def test_any_project_name_gives_a_safe_download_name(client, admin) -> None:
    """The header was built from the raw name: a non-Latin-1 name made every export a 500, ESC dropped
    the connection and a quote could add a second filename."""
    name = 'Ärger 日本 "x"; filename=evil.sh \x1b'
    project = create_project(client, admin, name=name)
    response = export(client, admin, project["id"], kind="pairs", format="jsonl")
    assert response.status_code == 200, response.text
    header = response.headers["content-disposition"]
    fallback, encoded = header.split("; filename*=UTF-8''")
    assert fallback.startswith('attachment; filename="_rger') and fallback.count('"') == 2
    assert urllib.parse.unquote(encoded).startswith(name)
