"""Synthetic preferences for measuring what the loop learns (bench/preference_loop.py).

Each is a scorer ``f(prompt_messages, completion_text) -> float`` for ``preflab simulate --scorer``,
stated in full here, and none is length: a small reward model can learn each from surface features,
and a policy can move toward each without simply writing more or less.

- ``readability``: the Flesch reading ease of the answer (the ``readability`` package's formula and
  syllable counter), divided by 100: short words and short sentences score high.
- ``second_person``: how much the answer talks to the reader: "you", "your", "yours", "yourself" per
  10 words, at most 2 (a rate, so longer answers gain nothing).
- ``structure``: how many lines of the answer are list items (``-``, ``*``, ``•`` or ``1.`` / ``1)``),
  at most 6, divided by 2.
"""

from __future__ import annotations

import re

SECOND_PERSON = re.compile(r"\b(?:you|your|yours|yourself|you're|you'll|you've)\b", re.IGNORECASE)
LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)


def readability(prompt_messages, completion_text: str) -> float:
    import readability as flesch  # pip install readability==0.3.2 (pure Python)

    words = re.findall(r"[A-Za-z']+|[.!?]", completion_text)
    if sum(w not in ".!?" for w in words) < 3:
        return -1.0  # too short to read as an answer
    sentences = re.split(r"(?<=[.!?])\s+", completion_text.strip())
    tokenized = "\n".join(" ".join(re.findall(r"[A-Za-z']+|[.,!?;:]", s)) for s in sentences if s)
    grade = flesch.getmeasures(tokenized, lang="en")["readability grades"]["FleschReadingEase"]
    return max(-1.0, min(1.5, grade / 100.0))


def second_person(prompt_messages, completion_text: str) -> float:
    words = len(re.findall(r"[A-Za-z']+", completion_text))
    if words < 3:
        return 0.0
    return min(2.0, 10.0 * len(SECOND_PERSON.findall(completion_text)) / words)


def structure(prompt_messages, completion_text: str) -> float:
    return min(6, len(LIST_ITEM.findall(completion_text))) / 2.0


PREFERENCES = {"readability": readability, "second_person": second_person, "structure": structure}
NOISE = {"readability": 0.15, "second_person": 0.3, "structure": 0.5}
"""Bradley-Terry temperature of the careful simulated labelers, in each scorer's own units: a pair one
typical step apart is ordered right about 3 times in 4."""
