"""Parsing each import format into the common record (pure: no database)."""

import gzip
import io
import json

import pytest

from app.imports.formats import ImportFormat, ImportRecord, RowError, parse_row, read_records, split_hh
from app.prompts.importer import BadLine, Problems


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


# --- HH-RLHF -------------------------------------------------------------------------------------


def test_hh_single_turn() -> None:
    messages, chosen, rejected = split_hh(
        "\n\nHuman: What is 2+2?\n\nAssistant: 4.", "\n\nHuman: What is 2+2?\n\nAssistant: Five, surely."
    )
    assert messages == [user("What is 2+2?")]
    assert (chosen, rejected) == ("4.", "Five, surely.")


def test_hh_multi_turn_keeps_the_whole_shared_dialogue() -> None:
    prefix = (
        "\n\nHuman: Hi there.\n\nAssistant:  Hello! How can I help?\n\n"
        "Human: Recommend a book.\n\nAssistant: Which genre?\n\nHuman: Science fiction."
    )
    messages, chosen, rejected = split_hh(
        prefix + "\n\nAssistant:  Try *The Dispossessed*.  ", prefix + "\n\nAssistant: I don't read."
    )
    assert messages == [
        user("Hi there."),
        assistant("Hello! How can I help?"),
        user("Recommend a book."),
        assistant("Which genre?"),
        user("Science fiction."),
    ]
    assert (chosen, rejected) == ("Try *The Dispossessed*.", "I don't read.")


def test_hh_answers_that_contain_an_assistant_marker_stay_whole() -> None:
    """Real quirk (helpful-base-test line 1167): an answer holds "\\n\\nAssistant:" itself."""
    messages, chosen, rejected = split_hh(
        "\n\nHuman: How much do solar panels cost?\n\nAssistant: Umm. Just a second..."
        "\n\nAssistant: About $50.",
        "\n\nHuman: How much do solar panels cost?\n\nAssistant: Visit a maker's web site.",
    )
    assert messages == [user("How much do solar panels cost?")]
    assert chosen == "Umm. Just a second...\n\nAssistant: About $50."
    assert rejected == "Visit a maker's web site."


def test_hh_answers_that_share_their_first_words() -> None:
    """The shared characters run into the answers; the split is still at the shared marker."""
    messages, chosen, rejected = split_hh(
        "\n\nHuman: Colour of the sky?\n\nAssistant: It is blue.",
        "\n\nHuman: Colour of the sky?\n\nAssistant: It is green.",
    )
    assert messages == [user("Colour of the sky?")]
    assert (chosen, rejected) == ("It is blue.", "It is green.")


@pytest.mark.parametrize(
    "chosen, rejected, fragment",
    [
        ("\n\nHuman: Hi\n\nAssistant: Hello", "\n\nHuman: Hi\n\nAssistant: Hello", "same transcript"),
        ("\n\nHuman: Hi\n\nAssistant: Hello", "\n\nHuman: Hi\n\nAssistant:  Hello ", "identical"),
        ("\n\nHuman: Hi\n\nAssistant:  ", "\n\nHuman: Hi\n\nAssistant: Hello", '"chosen" is empty'),
        ("\n\nHuman: Hi\n\nAssistant: Hello", "\n\nHuman: Hi\n\nAssistant:", '"rejected" is empty'),
        ("Hi, how are you?", "Hi, how are you doing?", "cannot split"),
        ("\n\nHuman: A\n\nAssistant: x", "\n\nHuman: B\n\nAssistant: y", "cannot split"),
        (
            "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye\n\nAssistant: Ciao",
            "\n\nHuman: Hi\n\nAssistant: Hey\n\nHuman: Later\n\nAssistant: Ok",
            "identical up to the final",
        ),
        ("Some preamble\n\nHuman: Hi\n\nAssistant: a", "Some preamble\n\nHuman: Hi\n\nAssistant: b", "start"),
        ("\n\nHuman: \n\nAssistant: a", "\n\nHuman: \n\nAssistant: b", "turn 1 of the shared dialogue"),
        (
            "\n\nHuman: Hi\n\nAssistant: a\n\nAssistant: b",
            "\n\nHuman: Hi\n\nAssistant: a\n\nAssistant: c",
            "does not end with a Human turn",
        ),
    ],
)
def test_hh_malformed_pairs_are_row_errors(chosen: str, rejected: str, fragment: str) -> None:
    with pytest.raises(RowError, match=fragment.replace("*", r"\*")):
        split_hh(chosen, rejected)


def test_hh_row_needs_transcript_strings() -> None:
    with pytest.raises(RowError, match='"rejected" is missing'):
        parse_row(ImportFormat.hh, {"chosen": "\n\nHuman: a\n\nAssistant: b"})
    with pytest.raises(RowError, match="transcript string"):
        parse_row(ImportFormat.hh, {"chosen": ["x"], "rejected": "y"})


# --- TRL pairs -----------------------------------------------------------------------------------


def test_pairs_with_strings() -> None:
    record = parse_row(ImportFormat.pairs, {"prompt": "Q?", "chosen": "good", "rejected": "bad"}, line=3)
    assert record == ImportRecord(3, [user("Q?")], ["good", "bad"], [[0], [1]], {})


def test_pairs_with_message_lists() -> None:
    record = parse_row(
        ImportFormat.pairs,
        {
            "prompt": [{"role": "system", "content": "Be kind."}, user("Q?")],
            "chosen": [assistant("good")],
            "rejected": [assistant("bad")],
            "metadata": {"id": 7},
            "score_chosen": 8.5,
        },
    )
    assert record.messages == [{"role": "system", "content": "Be kind."}, user("Q?")]
    assert record.completions == ["good", "bad"] and record.tiers == [[0], [1]]
    assert record.metadata == {"id": 7, "score_chosen": 8.5}, "unknown fields are kept as metadata"


def test_pairs_with_full_conversations_strip_the_given_prompt() -> None:
    prompt = [user("Hi"), assistant("Hello"), user("Q?")]
    record = parse_row(
        ImportFormat.pairs,
        {"prompt": prompt, "chosen": [*prompt, assistant("good")], "rejected": [*prompt, assistant("bad")]},
    )
    assert record.messages == prompt and record.completions == ["good", "bad"]
    text_prompt = parse_row(
        ImportFormat.pairs,
        {"prompt": "Q?", "chosen": [user("Q?"), assistant("good")], "rejected": [assistant("bad")]},
    )
    assert text_prompt.messages == [user("Q?")] and text_prompt.completions == ["good", "bad"]


def test_pairs_with_implicit_prompt() -> None:
    """TRL's implicit prompt: no "prompt"; the conversations' shared leading messages are the prompt."""
    shared = [user("Hi"), assistant("Hello"), user("Q?")]
    record = parse_row(
        ImportFormat.pairs, {"chosen": [*shared, assistant("good")], "rejected": [*shared, assistant("bad")]}
    )
    assert record.messages == shared and record.completions == ["good", "bad"]


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"prompt": "Q", "chosen": "a"}, '"rejected" is missing'),
        ({"chosen": "a", "rejected": "b"}, '"prompt" is missing'),
        ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "same text"),
        ({"prompt": "Q", "chosen": " ", "rejected": "b"}, '"chosen" is blank'),
        ({"prompt": " ", "chosen": "a", "rejected": "b"}, '"prompt" is blank'),
        ({"prompt": "Q", "chosen": [user("a")], "rejected": "b"}, "one assistant message"),
        (
            {"prompt": "Q", "chosen": [assistant("a"), assistant("b")], "rejected": "b"},
            "one assistant message",
        ),
        ({"prompt": [assistant("x")], "chosen": "a", "rejected": "b"}, 'role "user"'),
        ({"prompt": [{"role": "wizard", "content": "x"}], "chosen": "a", "rejected": "b"}, "prompt[0].role"),
        ({"prompt": "Q", "chosen": 5, "rejected": "b"}, '"chosen" must be a string or'),
        ({"prompt": "Q", "chosen": "a", "rejected": "b", "metadata": [1]}, '"metadata" must be'),
        ({"chosen": [user("Q"), assistant("a")], "rejected": [user("R"), assistant("b")]}, "share no"),
    ],
)
def test_pairs_errors(row: dict, fragment: str) -> None:
    with pytest.raises(RowError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_row(ImportFormat.pairs, row)


# --- rankings ------------------------------------------------------------------------------------


def test_rankings_with_ties() -> None:
    record = parse_row(
        ImportFormat.rankings,
        {"messages": [user("Q?")], "completions": ["a", "b", "c"], "ranking": [[0], [2, 1]]},
    )
    assert record.completions == ["a", "b", "c"] and record.tiers == [[0], [2, 1]]


@pytest.mark.parametrize(
    "row, fragment",
    [
        ({"completions": ["a", "b"], "ranking": [[0], [1]]}, "exactly one"),
        ({"prompt": "Q", "completions": ["a"], "ranking": [[0]]}, "2 to 9"),
        ({"prompt": "Q", "completions": ["a", "a"], "ranking": [[0], [1]]}, "twice"),
        ({"prompt": "Q", "completions": ["a", ""], "ranking": [[0], [1]]}, "completions[1]"),
        ({"prompt": "Q", "completions": ["a", "b"], "ranking": [[0], [2]]}, "out of range [2]"),
        ({"prompt": "Q", "completions": ["a", "b", "c"], "ranking": [[0], [0, 1]]}, "repeated indexes [0]"),
        ({"prompt": "Q", "completions": ["a", "b", "c"], "ranking": [[0], [1]]}, "missing indexes [2]"),
        ({"prompt": "Q", "completions": ["a", "b"], "ranking": [[0, 1]]}, "one tier"),
        ({"prompt": "Q", "completions": ["a", "b"], "ranking": [[0], []]}, "ranking[1]"),
        ({"prompt": "Q", "completions": ["a", "b"], "ranking": [[True], [1]]}, "integers"),
        ({"prompt": "Q", "completions": ["a", "b"]}, '"ranking" must be'),
    ],
)
def test_rankings_errors(row: dict, fragment: str) -> None:
    with pytest.raises(RowError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_row(ImportFormat.rankings, row)


# --- content hash and reading --------------------------------------------------------------------


def test_content_hash_is_the_same_preference_whatever_the_format_or_order() -> None:
    pair = parse_row(ImportFormat.pairs, {"prompt": "Q?", "chosen": "good", "rejected": "bad"})
    hh = parse_row(
        ImportFormat.hh,
        {"chosen": "\n\nHuman: Q?\n\nAssistant: good", "rejected": "Human: Q?\n\nAssistant: bad"},
    )
    ranking = parse_row(
        ImportFormat.rankings, {"prompt": "Q?", "completions": ["bad", "good"], "ranking": [[1], [0]]}
    )
    assert pair.content_hash == hh.content_hash == ranking.content_hash
    swapped = parse_row(ImportFormat.pairs, {"prompt": "Q?", "chosen": "bad", "rejected": "good"})
    assert swapped.content_hash != pair.content_hash
    with_metadata = parse_row(
        ImportFormat.pairs, {"prompt": "Q?", "chosen": "good", "rejected": "bad", "metadata": {"a": 1}}
    )
    assert with_metadata.content_hash == pair.content_hash
    tied = [
        parse_row(ImportFormat.rankings, {"prompt": "Q", "completions": c, "ranking": r})
        for c, r in ((["a", "b", "c"], [[0], [1, 2]]), (["c", "b", "a"], [[2], [0, 1]]))
    ]
    assert tied[0].content_hash == tied[1].content_hash


def test_read_records_gzip_and_problems() -> None:
    rows = [
        {"prompt": "Q1", "chosen": "a", "rejected": "b"},
        {"prompt": "Q2", "chosen": "a"},
        {"prompt": "Q3", "chosen": "a", "rejected": "b"},
    ]
    body = ("".join(json.dumps(r) + "\n" for r in rows) + "\nnot json\n").encode()
    for data in (body, gzip.compress(body)):
        problems = Problems()
        records = list(read_records(io.BytesIO(data), ImportFormat.pairs, problems))
        assert [r.line for r in records] == [1, 3]
        assert [(e.line, e.message.split(" (")[0]) for e in problems.errors] == [
            (2, '"rejected" is missing'),
            (5, "not valid JSON"),
        ]


def test_read_records_stops_at_an_unreadable_line() -> None:
    body = b'{"prompt": "Q", "chosen": "a", "rejected": "b"}\n{"prompt": "caf\xe9"}\n'
    with pytest.raises(BadLine) as raised:
        list(read_records(io.BytesIO(body), ImportFormat.pairs, Problems()))
    assert raised.value.line == 2
