"""Existing preference data, parsed into one common record. Pure: no database, no HTTP.

Three line formats (JSONL, one object a line) become the same `ImportRecord`: a prompt as chat
messages, the completions, and tiers of indexes into them, best first.

- `pairs`: `{"prompt", "chosen", "rejected"}`, strings or chat message lists as TRL writes them;
  chosen/rejected may be whole conversations that repeat the prompt, which is then stripped.
- `hh`: Anthropic HH-RLHF transcripts `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}`.
- `rankings`: `{"prompt" | "messages", "completions": [...], "ranking": [[0], [2, 1]]}`.

Fields a format does not know are kept as metadata (TRL datasets carry `score_chosen`, `prompt_id`...).
"""

import enum
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, Any

from app.labeling.expansion import check_tiers
from app.prompts.importer import LineError, Problems, decoded_lines, jsonl_records
from app.prompts.schemas import MAX_TEXT  # characters in one message or completion, as for prompt uploads

MAX_MESSAGES = 200
MAX_COMPLETIONS = 9  # the most a project ranks (K); imported rankings may hold fewer or more than K
ROLES = ("system", "user", "assistant")

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")
_HH_ROLE = {"Human": "user", "Assistant": "assistant"}

Message = dict[str, str]


class ImportFormat(enum.StrEnum):
    pairs = "pairs"
    hh = "hh"
    rankings = "rankings"


class RowError(ValueError):
    """One line that cannot be imported; the message says why, in words a person can act on."""


@dataclass(frozen=True)
class ImportRecord:
    """One ranking to import: a prompt, its completions, and tiers of indexes into them, best first."""

    line: int
    messages: list[Message]
    completions: list[str]
    tiers: list[list[int]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of prompt messages + completions + tiers.

        Canonical: completions listed best tier first (texts sorted within a tier), tiers as indexes into
        that list, compact sorted-key JSON. So the same preference hashes the same whichever format
        or completion order brought it; metadata and the line number play no part.
        """
        ordered = [sorted(self.completions[i] for i in tier) for tier in self.tiers]
        completions = [text for tier in ordered for text in tier]
        tiers, start = [], 0
        for tier in ordered:
            tiers.append(list(range(start, start + len(tier))))
            start += len(tier)
        return _sha256({"messages": self.messages, "completions": completions, "tiers": tiers})

    @cached_property
    def prompt_key(self) -> str:
        """Rows of one import with the same prompt messages and metadata share one stored prompt."""
        return _sha256({"messages": self.messages, "metadata": self.metadata})


def read_records(upload: IO[bytes], fmt: ImportFormat, problems: Problems) -> Iterator[ImportRecord]:
    """The upload's valid lines as records (gzip accepted); bad lines are added to `problems`.

    Raises `app.prompts.importer.BadLine` where the upload stops being readable (not UTF-8, corrupt gzip).
    """
    for line, record in jsonl_records(decoded_lines(upload)):
        if isinstance(record, LineError):
            problems.add(record.line, record.message)
            continue
        try:
            yield parse_row(fmt, record, line=line)
        except RowError as exc:
            problems.add(line, str(exc))


def parse_row(fmt: ImportFormat, row: dict[str, Any], *, line: int = 0) -> ImportRecord:
    """One JSON object of the given format as a record; raises RowError naming the problem."""
    if fmt == ImportFormat.pairs:
        messages, chosen, rejected = parse_pair(row)
        completions, tiers = [chosen, rejected], [[0], [1]]
        known = {"prompt", "chosen", "rejected", "metadata"}
    elif fmt == ImportFormat.hh:
        messages, chosen, rejected = parse_hh(row)
        completions, tiers = [chosen, rejected], [[0], [1]]
        known = {"chosen", "rejected", "metadata"}
    else:
        messages, completions, tiers = parse_ranking(row)
        known = {"prompt", "messages", "completions", "ranking", "metadata"}
    return ImportRecord(line, messages, completions, tiers, _metadata(row, known))


# --- pairs ---------------------------------------------------------------------------------------


def parse_pair(row: dict[str, Any]) -> tuple[list[Message], str, str]:
    """TRL preference pair → (prompt messages, chosen text, rejected text).

    `prompt` is text or a chat; `chosen`/`rejected` are texts, lists of assistant messages (one), or
    whole conversations that start with the prompt. Without `prompt`, the conversations' shared
    leading messages are the prompt (TRL's implicit prompt).
    """
    for name in ("chosen", "rejected"):
        if name not in row:
            raise RowError(f'"{name}" is missing')
    chosen = _text_or_messages(row["chosen"], "chosen")
    rejected = _text_or_messages(row["rejected"], "rejected")
    if row.get("prompt") is not None:
        prompt = _text_or_messages(row["prompt"], "prompt")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if isinstance(prompt, str) and not prompt.strip():
            raise RowError('"prompt" is blank')
    elif isinstance(chosen, list) and isinstance(rejected, list):
        messages = _shared_prefix(chosen[:-1], rejected[:-1])
        if not messages:
            raise RowError(
                '"prompt" is missing, and "chosen" and "rejected" share no leading messages to take it from'
            )
    else:
        raise RowError('"prompt" is missing (only conversations in "chosen"/"rejected" carry their prompt)')
    _check_prompt(messages, "prompt")
    chosen_text = _final_answer(chosen, messages, "chosen")
    rejected_text = _final_answer(rejected, messages, "rejected")
    if chosen_text == rejected_text:
        raise RowError('"chosen" and "rejected" are the same text; a pair needs two different answers')
    return messages, chosen_text, rejected_text


def _final_answer(side: str | list[Message], prompt: list[Message], name: str) -> str:
    if isinstance(side, str):
        if not side.strip():
            raise RowError(f'"{name}" is blank')
        return side
    answer = side[len(prompt) :] if side[: len(prompt)] == prompt and len(side) > len(prompt) else side
    if len(answer) != 1 or answer[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in answer)
        raise RowError(
            f'"{name}" must hold one assistant message after the prompt, found [{roles}] '
            "(a whole conversation must start with exactly the prompt's messages)"
        )
    return answer[0]["content"]


def _shared_prefix(a: list[Message], b: list[Message]) -> list[Message]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


# --- Anthropic HH-RLHF ---------------------------------------------------------------------------


def parse_hh(row: dict[str, Any]) -> tuple[list[Message], str, str]:
    for name in ("chosen", "rejected"):
        if name not in row:
            raise RowError(f'"{name}" is missing')
        if not isinstance(row[name], str):
            raise RowError(f'"{name}" must be a transcript string ("\\n\\nHuman: ...\\n\\nAssistant: ...")')
    return split_hh(row["chosen"], row["rejected"])


def split_hh(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """Two HH-RLHF transcripts → (shared dialogue as chat messages, chosen answer, rejected answer).

    The dialogue is everything before the last "\\n\\nAssistant:" that both transcripts share
    character for character; what follows it in each is that transcript's final answer. (Some answers
    in the real data contain "\\n\\nAssistant:" themselves, so splitting each transcript at its own last
    marker would cut answers in two.) Turns are stripped of surrounding whitespace; Human becomes
    `user`, Assistant `assistant`.
    """
    chosen, rejected = _leading_break(chosen), _leading_break(rejected)
    if chosen == rejected:
        raise RowError('"chosen" and "rejected" are the same transcript; there is no preference to import')
    cut = chosen.rfind(HH_ASSISTANT, 0, _common_prefix_length(chosen, rejected))
    if cut < 0:
        raise RowError(
            'cannot split the transcripts: they share no dialogue up to a final "\\n\\nAssistant:" turn'
        )
    messages = hh_messages(chosen[:cut])
    if messages[-1]["role"] != "user":
        raise RowError("cannot split the transcripts: the shared dialogue does not end with a Human turn")
    answers = []
    for name, transcript in (("chosen", chosen), ("rejected", rejected)):
        answer = transcript[cut + len(HH_ASSISTANT) :]
        if HH_HUMAN in answer:
            raise RowError(
                f'"{name}" goes on with a Human turn after the shared dialogue: the transcripts must be '
                'identical up to the final "\\n\\nAssistant:" turn'
            )
        answer = answer.strip()
        if not answer:
            raise RowError(f'the final Assistant turn of "{name}" is empty')
        if len(answer) > MAX_TEXT:
            raise RowError(f'the final Assistant turn of "{name}" is longer than {MAX_TEXT} characters')
        answers.append(answer)
    if answers[0] == answers[1]:
        raise RowError("the final Assistant turns of chosen and rejected are identical")
    return messages, answers[0], answers[1]


def _common_prefix_length(a: str, b: str) -> int:
    """Characters a and b share from the start (a binary search of slice comparisons, done in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a[:mid] == b[:mid]:
            low = mid
        else:
            high = mid - 1
    return low


def _leading_break(transcript: str) -> str:
    """Accept a transcript written "Human: ..." without the blank line the dataset starts with."""
    return "\n\n" + transcript if transcript.startswith(("Human:", "Assistant:")) else transcript


def hh_messages(dialogue: str) -> list[Message]:
    """A dialogue "\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c" as user/assistant/user chat messages."""
    parts = _HH_TURN.split(_leading_break(dialogue))
    if parts[0].strip():
        raise RowError('the transcript must start with "\\n\\nHuman:"')
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        text = content.strip()
        if not text:
            raise RowError(f"turn {len(messages) + 1} of the shared dialogue ({speaker}) is empty")
        if len(text) > MAX_TEXT:
            raise RowError(
                f"turn {len(messages) + 1} of the shared dialogue is longer than {MAX_TEXT} characters"
            )
        messages.append({"role": _HH_ROLE[speaker], "content": text})
    if not messages:
        raise RowError('the transcript has no "\\n\\nHuman:" turn before its final Assistant turn')
    if messages[0]["role"] != "user":
        raise RowError('the transcript must start with "\\n\\nHuman:"')
    if len(messages) > MAX_MESSAGES:
        raise RowError(f"the shared dialogue has more than {MAX_MESSAGES} turns")
    return messages


# --- rankings ------------------------------------------------------------------------------------


def parse_ranking(row: dict[str, Any]) -> tuple[list[Message], list[str], list[list[int]]]:
    has_prompt, has_messages = row.get("prompt") is not None, row.get("messages") is not None
    if has_prompt == has_messages:
        raise RowError('give exactly one of "prompt" (text) or "messages" (a chat)')
    if has_prompt:
        prompt = row["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise RowError('"prompt" must be a non-blank string')
        _check_length(prompt, "prompt")
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = _messages(row["messages"], "messages")
    _check_prompt(messages, "prompt" if has_prompt else "messages")

    completions = row.get("completions")
    if not isinstance(completions, list) or not 2 <= len(completions) <= MAX_COMPLETIONS:
        raise RowError(f'"completions" must be a list of 2 to {MAX_COMPLETIONS} texts')
    for i, text in enumerate(completions):
        if not isinstance(text, str) or not text.strip():
            raise RowError(f'"completions[{i}]" must be a non-blank string')
        _check_length(text, f"completions[{i}]")
    if len(set(completions)) != len(completions):
        raise RowError('"completions" contains the same text twice')

    ranking = row.get("ranking")
    if not isinstance(ranking, list) or not ranking:
        raise RowError('"ranking" must be a list of tiers of completion indexes, best first: [[0], [2, 1]]')
    tiers: list[list[int]] = []
    for t, tier in enumerate(ranking):
        if not isinstance(tier, list) or not tier:
            raise RowError(f'"ranking[{t}]" must be a non-empty list of completion indexes')
        if any(not isinstance(i, int) or isinstance(i, bool) for i in tier):
            raise RowError(f'"ranking[{t}]" must hold integers (indexes into "completions")')
        tiers.append(list(tier))
    if check := check_tiers(tiers, range(len(completions))):
        raise RowError(
            f'"ranking" must list every completion index 0..{len(completions) - 1} exactly once: '
            + check.problems(unknown="indexes out of range", noun="indexes")
        )
    if len(tiers) < 2:
        raise RowError('"ranking" has one tier: all completions are tied, so there is no preference')
    return messages, completions, tiers


# --- shared checks -------------------------------------------------------------------------------


def _text_or_messages(value: Any, name: str) -> str | list[Message]:
    if isinstance(value, str):
        _check_length(value, name)
        return value
    return _messages(value, name)


def _messages(value: Any, name: str) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise RowError(f'"{name}" must be a string or a non-empty list of {{"role", "content"}} messages')
    if len(value) > MAX_MESSAGES:
        raise RowError(f'"{name}" has more than {MAX_MESSAGES} messages')
    messages = []
    for i, message in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise RowError(f'"{where}" must be an object with exactly "role" and "content"')
        if message["role"] not in ROLES:
            raise RowError(f'"{where}.role" must be system, user or assistant, not {message["role"]!r}')
        if not isinstance(message["content"], str) or not message["content"].strip():
            raise RowError(f'"{where}.content" must be a non-blank string')
        _check_length(message["content"], f"{where}.content")
        messages.append({"role": message["role"], "content": message["content"]})
    return messages


def _check_prompt(messages: list[Message], name: str) -> None:
    if messages[-1]["role"] != "user":
        raise RowError(f'the last message of "{name}" must have role "user": it is what the answers answer')


def _check_length(text: str, name: str) -> None:
    if len(text) > MAX_TEXT:
        raise RowError(f'"{name}" is longer than {MAX_TEXT} characters')


def _metadata(row: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """`metadata` (an object) plus any field the format does not use, such as TRL's `score_chosen`."""
    given = row.get("metadata")
    if given is not None and not isinstance(given, dict):
        raise RowError('"metadata" must be a JSON object')
    extra = {key: value for key, value in row.items() if key not in known}
    return {**extra, **(given or {})}


def _sha256(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
