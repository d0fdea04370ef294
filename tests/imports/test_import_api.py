"""POST /projects/{id}/import: pairs, hh and rankings stored as rankings + comparisons, all or nothing."""

import gzip
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.imports import service
from app.labeling.models import Comparison, Ranking
from app.prompts.models import Completion, Prompt
from tests.conftest import create_project
from tests.helpers import assert_error

JSONL = {"Content-Type": "application/x-ndjson"}
HH_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf"
HH_SPLITS = {
    "harmless-base-test.jsonl.gz": (2312, [87, 517, 926, 1104]),
    "helpful-base-test.jsonl.gz": (2354, [121, 722, 741, 1215, 2064, 2169]),
}


@pytest.fixture
def project(client, admin) -> dict:
    return create_project(client, admin, completions_per_prompt=4)


def lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def post_import(client, account, project_id: int, body: str | bytes, fmt: str | None, **params):
    if fmt is not None:
        params["format"] = fmt
    return client.post(
        f"/api/v1/projects/{project_id}/import",
        content=body.encode() if isinstance(body, str) else body,
        headers={**account.headers, **JSONL},
        params=params,
    )


def counts(db) -> dict[str, int]:
    db.rollback()  # a fresh snapshot: see what the app committed since
    return {
        model.__tablename__: db.scalar(select(func.count()).select_from(model))
        for model in (Prompt, Completion, Ranking, Comparison)
    }


def texts_by_id(db) -> dict[int, str]:
    return dict(db.execute(select(Completion.id, Completion.text)).all())


def comparisons(db) -> list[tuple[str, str, int, int]]:
    text = texts_by_id(db)
    rows = db.scalars(select(Comparison).order_by(Comparison.id))
    return [(text[c.chosen_id], text[c.rejected_id], c.chosen_tier, c.rejected_tier) for c in rows]


# --- each format -----------------------------------------------------------------------------------


def test_pairs_are_stored_like_labeled_rankings(client, admin, project, db) -> None:
    body = lines(
        {
            "prompt": "Why is the sky blue?",
            "chosen": "Rayleigh scattering.",
            "rejected": "Paint.",
            "metadata": {"id": 1},
        },
        {
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
            "chosen": [{"role": "assistant", "content": "4"}],
            "rejected": [{"role": "assistant", "content": "5"}],
        },
    )
    response = post_import(client, admin, project["id"], body, "pairs")
    assert response.status_code == 201, response.text
    assert response.json() == {
        "imported": 2,
        "prompts": 2,
        "completions": 4,
        "comparisons": 2,
        "duplicates": 0,
        "skipped": 0,
        "skipped_lines": [],
        "format": "pairs",
        "source": "import:pairs:api",
    }
    counts(db)
    prompts = db.scalars(select(Prompt).order_by(Prompt.id)).all()
    assert [p.messages for p in prompts] == [
        [{"role": "user", "content": "Why is the sky blue?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    ]
    assert [p.metadata_ for p in prompts] == [{"id": 1}, {}]
    assert {p.source for p in prompts} == {"import:pairs:api"}
    completions = db.scalars(select(Completion).order_by(Completion.id)).all()
    assert [(c.text, c.origin, c.model) for c in completions] == [
        ("Rayleigh scattering.", "imported", None),
        ("Paint.", "imported", None),
        ("4", "imported", None),
        ("5", "imported", None),
    ]
    c = [completion.id for completion in completions]
    rankings = db.scalars(select(Ranking).order_by(Ranking.id)).all()
    assert [r.tiers for r in rankings] == [[[c[0]], [c[1]]], [[c[2]], [c[3]]]]
    for ranking, prompt in zip(rankings, prompts, strict=True):
        assert ranking.prompt_id == prompt.id and ranking.project_id == project["id"]
        assert ranking.labeler_id is None and ranking.assignment_id is None
        assert ranking.instructions_version_id is None
        assert ranking.source == "import:pairs:api" and len(ranking.content_hash) == 64
        assert ranking.flags == {} and ranking.none_acceptable is False
    stored = db.scalars(select(Comparison).order_by(Comparison.id)).all()
    assert [
        (x.ranking_id, x.prompt_id, x.chosen_id, x.rejected_id, x.chosen_tier, x.rejected_tier)
        for x in stored
    ] == [
        (rankings[0].id, prompts[0].id, c[0], c[1], 0, 1),
        (rankings[1].id, prompts[1].id, c[2], c[3], 0, 1),
    ]


def test_trl_full_conversations_are_stripped_of_the_prompt(client, admin, project, db) -> None:
    conversation = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Q?"},
    ]
    body = lines(
        {
            "prompt": conversation,
            "chosen": [*conversation, {"role": "assistant", "content": "good"}],
            "rejected": [*conversation, {"role": "assistant", "content": "bad"}],
        },
        {
            "chosen": [*conversation, {"role": "assistant", "content": "fine"}],
            "rejected": [*conversation, {"role": "assistant", "content": "poor"}],
        },
    )
    response = post_import(client, admin, project["id"], body, "pairs")
    assert response.status_code == 201, response.text
    assert response.json()["prompts"] == 1, "rows with the same prompt share it"
    counts(db)
    assert db.scalars(select(Prompt.messages)).all() == [conversation]
    assert comparisons(db) == [("good", "bad", 0, 1), ("fine", "poor", 0, 1)]


def test_hh_transcripts_multipart(client, admin, project, db) -> None:
    body = lines(
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: Blue.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: No.",
        },
        {"chosen": "\n\nHuman: 2+2?\n\nAssistant: 4", "rejected": "\n\nHuman: 2+2?\n\nAssistant: 22"},
    )
    response = client.post(
        f"/api/v1/projects/{project['id']}/import",
        params={"format": "hh"},
        files={"file": ("hh-sample.jsonl", body.encode(), "application/x-ndjson")},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["imported"], result["prompts"], result["completions"], result["comparisons"]) == (
        2,
        2,
        4,
        2,
    )
    assert result["source"] == "import:hh:hh-sample.jsonl"
    counts(db)
    assert db.scalars(select(Prompt.messages).order_by(Prompt.id)).all() == [
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Name a colour."},
        ],
        [{"role": "user", "content": "2+2?"}],
    ]
    assert comparisons(db) == [("Blue.", "No.", 0, 1), ("4", "22", 0, 1)]
    assert set(db.scalars(select(Ranking.source))) == {"import:hh:hh-sample.jsonl"}


def test_rankings_with_ties_expand_like_labeled_ones(client, admin, project, db) -> None:
    body = lines(
        {
            "prompt": "Rank these",
            "completions": ["a", "b", "c", "d"],
            "ranking": [[2], [0, 3], [1]],
            "metadata": {"k": 4},
        },
        {"messages": [{"role": "user", "content": "Two"}], "completions": ["x", "y"], "ranking": [[1], [0]]},
    )
    response = post_import(client, admin, project["id"], body, "rankings")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["imported"], result["prompts"], result["completions"], result["comparisons"]) == (
        2,
        2,
        6,
        6,
    )
    counts(db)
    text = texts_by_id(db)
    tiers = [
        [[text[cid] for cid in tier] for tier in r.tiers]
        for r in db.scalars(select(Ranking).order_by(Ranking.id))
    ]
    assert tiers == [[["c"], ["a", "d"], ["b"]], [["y"], ["x"]]]
    assert comparisons(db) == [
        ("c", "a", 0, 1),
        ("c", "d", 0, 1),
        ("c", "b", 0, 2),
        ("a", "b", 1, 2),
        ("d", "b", 1, 2),
        ("y", "x", 0, 1),
    ]


def test_pairs_of_one_ranking_share_prompt_and_completions(client, admin, project, db) -> None:
    """A pair dataset made from rankings repeats prompts and answers; one import stores each once."""
    body = lines(
        {"prompt": "Q", "chosen": "best", "rejected": "middle"},
        {"prompt": "Q", "chosen": "best", "rejected": "worst"},
        {"prompt": "Q", "chosen": "middle", "rejected": "worst"},
        {"prompt": "Q", "chosen": "x", "rejected": "y", "metadata": {"other": True}},
    )
    result = post_import(client, admin, project["id"], body, "pairs").json()
    assert (result["imported"], result["prompts"], result["completions"], result["comparisons"]) == (
        4,
        2,
        5,
        4,
    )
    assert counts(db) == {"prompts": 2, "completions": 5, "rankings": 4, "comparisons": 4}


# --- all or nothing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, good, bad, fragment",
    [
        (
            "pairs",
            {"prompt": "Q", "chosen": "a", "rejected": "b"},
            {"prompt": "Q", "chosen": "a"},
            '"rejected" is missing',
        ),
        (
            "hh",
            {"chosen": "\n\nHuman: Q\n\nAssistant: a", "rejected": "\n\nHuman: Q\n\nAssistant: b"},
            {"chosen": "\n\nHuman: Q\n\nAssistant: a", "rejected": "\n\nHuman: Q\n\nAssistant: a"},
            "same transcript",
        ),
        (
            "rankings",
            {"prompt": "Q", "completions": ["a", "b"], "ranking": [[0], [1]]},
            {"prompt": "Q", "completions": ["a", "b"], "ranking": [[0], [0]]},
            "exactly once",
        ),
    ],
)
def test_one_bad_line_keeps_nothing(client, admin, project, db, fmt, good, bad, fragment) -> None:
    seed = lines({"prompt": "seed", "chosen": "s1", "rejected": "s2"})
    assert post_import(client, admin, project["id"], seed, "pairs").status_code == 201
    before = counts(db)
    body = lines(*({**good, "metadata": {"i": i}} for i in range(3))) + lines(bad) + lines(good)
    error = assert_error(post_import(client, admin, project["id"], body, fmt), 422, "invalid_upload")
    assert error["details"]["line"] == 4
    assert error["details"]["errors"] == [{"line": 4, "message": error["details"]["errors"][0]["message"]}]
    assert fragment in error["message"] and "Line 4" in error["message"], error["message"]
    assert counts(db) == before


def test_every_bad_line_is_listed_and_skip_invalid_reports_them(client, admin, project, db) -> None:
    body = (
        lines({"prompt": "Q1", "chosen": "a", "rejected": "b"})
        + "{not json\n"
        + lines(
            {"prompt": "Q2", "chosen": "same", "rejected": "same"},
            {"prompt": "Q3", "chosen": "c", "rejected": "d"},
        )
    )
    error = assert_error(post_import(client, admin, project["id"], body, "pairs"), 422, "invalid_upload")
    assert [e["line"] for e in error["details"]["errors"]] == [2, 3] and error["details"]["problems"] == 2
    assert counts(db)["rankings"] == 0

    response = post_import(client, admin, project["id"], body, "pairs", skip_invalid="true")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["imported"] == 2 and result["skipped"] == 2
    assert [s["line"] for s in result["skipped_lines"]] == [2, 3]
    assert "not valid JSON" in result["skipped_lines"][0]["message"]
    assert counts(db) == {"prompts": 2, "completions": 4, "rankings": 2, "comparisons": 2}


def test_unreadable_or_empty_uploads_are_refused_even_with_skip_invalid(client, admin, project, db) -> None:
    not_utf8 = lines({"prompt": "Q", "chosen": "a", "rejected": "b"}).encode() + b'{"prompt": "caf\xe9"}\n'
    error = assert_error(
        post_import(client, admin, project["id"], not_utf8, "pairs", skip_invalid="true"), 422
    )
    assert error["details"]["line"] == 2 and "UTF-8" in error["message"]
    broken_gzip = gzip.compress(lines({"prompt": "Q", "chosen": "a", "rejected": "b"}).encode() * 50)[:-30]
    assert_error(post_import(client, admin, project["id"], broken_gzip, "pairs"), 422, "invalid_upload")
    assert_error(post_import(client, admin, project["id"], "\n \n", "pairs"), 422, "empty_upload")
    only_bad = lines({"prompt": "Q"})
    assert_error(
        post_import(client, admin, project["id"], only_bad, "pairs", skip_invalid="true"),
        422,
        "invalid_upload",
    )
    assert counts(db)["rankings"] == 0


def test_gzip_body(client, admin, project, db) -> None:
    body = gzip.compress(lines({"prompt": "zipped", "chosen": "a", "rejected": "b"}).encode())
    response = client.post(
        f"/api/v1/projects/{project['id']}/import",
        content=body,
        params={"format": "pairs"},
        headers={**admin.headers, "Content-Type": "application/gzip"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["imported"] == 1
    assert comparisons(db) == [("a", "b", 0, 1)]


def test_upload_over_the_limit_is_413(client, admin, project, db) -> None:
    big = lines(*({"prompt": "x" * 1000, "chosen": f"a{i}", "rejected": "b"} for i in range(1200)))
    assert_error(post_import(client, admin, project["id"], big, "pairs"), 413, "payload_too_large")
    assert counts(db)["prompts"] == 0


# --- duplicates ------------------------------------------------------------------------------------


def test_reimport_adds_nothing(client, admin, project, db) -> None:
    body = lines(
        {"prompt": "Q1", "chosen": "a", "rejected": "b"},
        {"prompt": "Q2", "chosen": "c", "rejected": "d"},
        {"prompt": "Q1", "chosen": "a", "rejected": "b", "metadata": {"seen": "again"}},  # repeats line 1
    )
    first = post_import(client, admin, project["id"], body, "pairs").json()
    assert (first["imported"], first["duplicates"]) == (2, 1)
    after_first = counts(db)
    again = post_import(client, admin, project["id"], gzip.compress(body.encode()), "pairs").json()
    assert (
        again["imported"],
        again["prompts"],
        again["completions"],
        again["comparisons"],
        again["duplicates"],
    ) == (0, 0, 0, 0, 3)
    # The same preference in another format is the same content.
    as_ranking = lines({"prompt": "Q2", "completions": ["d", "c"], "ranking": [[1], [0]]})
    assert post_import(client, admin, project["id"], as_ranking, "rankings").json()["duplicates"] == 1
    assert counts(db) == after_first
    # Another project is another namespace.
    other = create_project(client, admin, name="other-project")
    assert post_import(client, admin, other["id"], body, "pairs").json()["imported"] == 2


def test_duplicates_are_found_across_batches(client, admin, project, db, monkeypatch) -> None:
    monkeypatch.setattr(service, "BATCH_SIZE", 2)
    rows = [{"prompt": f"Q{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    result = post_import(client, admin, project["id"], lines(*rows, rows[0], rows[3]), "pairs").json()
    assert (result["imported"], result["duplicates"], result["prompts"]) == (5, 2, 5)
    assert counts(db)["rankings"] == 5


def test_the_unique_constraint_is_the_safety_net(client, admin, project, db, monkeypatch) -> None:
    """If two imports race past the hash lookup, the constraint refuses the second: 409, nothing kept."""
    body = lines(
        {"prompt": "Q1", "chosen": "a", "rejected": "b"}, {"prompt": "Q2", "chosen": "c", "rejected": "d"}
    )
    assert post_import(client, admin, project["id"], body, "pairs").status_code == 201
    before = counts(db)
    monkeypatch.setattr(
        service._Writer, "_drop_duplicates", lambda self, batch: [(r, r.content_hash) for r in batch]
    )
    more = lines({"prompt": "Q3", "chosen": "e", "rejected": "f"}) + body
    assert_error(post_import(client, admin, project["id"], more, "pairs"), 409, "import_conflict")
    assert counts(db) == before


# --- access and request checks ---------------------------------------------------------------------


@pytest.mark.parametrize("role", ["labeler", "researcher", "worker"])
def test_only_admins_import(client, make_account, project, db, role) -> None:
    account = make_account(role)
    body = lines({"prompt": "Q", "chosen": "a", "rejected": "b"})
    assert_error(post_import(client, account, project["id"], body, "pairs"), 403, "wrong_role")
    assert_error(post_import(client, account, 999_999, body, "pairs"), 403, "wrong_role")  # role first
    assert_error(post_import(client, account, project["id"], body, None), 403, "wrong_role")
    assert counts(db)["rankings"] == 0


def test_request_checks(client, admin, project) -> None:
    body = lines({"prompt": "Q", "chosen": "a", "rejected": "b"})
    assert_error(post_import(client, admin, 999_999, body, "pairs"), 404, "project_not_found")
    assert_error(post_import(client, admin, project["id"], body, None), 422, "validation_failed")
    assert_error(post_import(client, admin, project["id"], body, "csv"), 422, "validation_failed")
    no_token = client.post(
        f"/api/v1/projects/{project['id']}/import", params={"format": "pairs"}, content=body
    )
    assert_error(no_token, 401)
    response = client.post(
        f"/api/v1/projects/{project['id']}/import",
        params={"format": "pairs"},
        files={"other": ("x.jsonl", body.encode())},
        headers=admin.headers,
    )
    assert_error(response, 422, "missing_file")


# --- the real data ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_shared_hh_rlhf_splits_import(client, admin, project, db) -> None:
    if not HH_DIR.is_dir():
        pytest.skip(f"the shared HH-RLHF splits are not at {HH_DIR}")
    totals = {"imported": 0, "skipped": 0, "comparisons": 0}
    for name, (rows, degenerate) in HH_SPLITS.items():
        data = (HH_DIR / name).read_bytes()
        # All or nothing by default: the degenerate lines of the real data are named.
        error = assert_error(post_import(client, admin, project["id"], data, "hh"), 422, "invalid_upload")
        assert [e["line"] for e in error["details"]["errors"]] == degenerate
        response = client.post(
            f"/api/v1/projects/{project['id']}/import",
            params={"format": "hh", "skip_invalid": "true"},
            files={"file": (name, data, "application/gzip")},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        result = response.json()
        assert result["imported"] == rows - len(degenerate) and result["duplicates"] == 0
        assert [s["line"] for s in result["skipped_lines"]] == degenerate
        assert result["source"] == f"import:hh:{name}"
        for key in totals:
            totals[key] += result[key]
    assert totals == {"imported": 4656, "skipped": 10, "comparisons": 4656}
    stored = counts(db)
    assert stored["rankings"] == stored["comparisons"] == 4656
    assert stored["completions"] == 2 * 4656
    again = client.post(
        f"/api/v1/projects/{project['id']}/import",
        params={"format": "hh", "skip_invalid": "true"},
        content=(HH_DIR / "helpful-base-test.jsonl.gz").read_bytes(),
        headers=admin.headers,
    ).json()
    assert (again["imported"], again["duplicates"]) == (0, 2348)
    assert counts(db) == stored
