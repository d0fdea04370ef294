"""Data preparation for the reward model: pairs back into rankings, the split by prompt, the input text.

The export (``kind=pairs``, see API.md) holds one row per comparison. A labeler's ranking of K
completions appears as up to C(K,2) rows sharing a ``ranking_id``; :func:`group_rankings` puts them back
together so that the trainer encodes each completion of a ranking once (InstructGPT's trick, see
docs/reward-model.md). Imported pairs are rankings of two.

Everything here is pure (no model, no torch) except :func:`encode`, which only needs a tokenizer.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from trainer.data import Chat, PreferencePair


@dataclass
class Ranking:
    """One labeler's ranking of one prompt's completions, with the strictly ordered pairs among them."""

    ranking_id: int
    prompt_id: int
    prompt: Chat
    completions: list[str] = field(default_factory=list)
    """The K distinct completions, in order of first appearance in the export."""
    completion_ids: list[int] = field(default_factory=list)
    """Server ids of ``completions`` (same order)."""
    pairs: list[tuple[int, int, int]] = field(default_factory=list)
    """``(chosen_index, rejected_index, tier_gap)``: indices into ``completions``; tier_gap =
    rejected_tier - chosen_tier (>= 1 for a strict preference)."""


def group_rankings(pairs: Sequence[PreferencePair]) -> list[Ranking]:
    """Group pairs by ``ranking_id`` into rankings; tied pairs are dropped (they carry no preference).

    Rankings come out sorted by ranking id, so the result does not depend on the row order of the export.
    """
    rankings: dict[int, Ranking] = {}
    index: dict[int, dict[int, int]] = {}  # ranking_id -> completion id -> position in completions
    for pair in pairs:
        if pair.tie:
            continue
        ranking = rankings.get(pair.ranking_id)
        if ranking is None:
            ranking = rankings[pair.ranking_id] = Ranking(pair.ranking_id, pair.prompt_id, pair.prompt)
            index[pair.ranking_id] = {}
        elif ranking.prompt_id != pair.prompt_id:
            raise ValueError(
                f"ranking {pair.ranking_id} has pairs of two prompts ({ranking.prompt_id}, {pair.prompt_id})"
            )
        positions = index[pair.ranking_id]
        sides = []
        for completion_id, text in ((pair.chosen_id, pair.chosen), (pair.rejected_id, pair.rejected)):
            if completion_id not in positions:
                positions[completion_id] = len(ranking.completions)
                ranking.completions.append(text)
                ranking.completion_ids.append(completion_id)
            sides.append(positions[completion_id])
        ranking.pairs.append((sides[0], sides[1], pair.rejected_tier - pair.chosen_tier))
    return [rankings[key] for key in sorted(rankings)]


@dataclass(frozen=True)
class Split:
    train: list[Ranking]
    eval: list[Ranking]
    eval_prompt_ids: list[int]
    """Sorted prompt ids held out; no ranking of these prompts is in ``train``."""


def split_by_prompt(rankings: Sequence[Ranking], eval_fraction: float, seed: int) -> Split:
    """Hold out ``round(eval_fraction * prompts)`` whole prompts (never single pairs), chosen by ``seed``.

    A positive fraction holds out at least one prompt, and at least one prompt always stays in training.
    The same rankings and seed give the same split, whatever order the rankings come in.
    """
    if not 0 <= eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in [0, 1) (got {eval_fraction})")
    prompt_ids = sorted({r.prompt_id for r in rankings})
    n_eval = round(eval_fraction * len(prompt_ids))
    if eval_fraction > 0:
        n_eval = max(n_eval, 1)
    n_eval = min(n_eval, len(prompt_ids) - 1) if prompt_ids else 0
    shuffled = list(prompt_ids)
    random.Random(seed).shuffle(shuffled)
    held_out = set(shuffled[:n_eval])
    return Split(
        train=[r for r in rankings if r.prompt_id not in held_out],
        eval=[r for r in rankings if r.prompt_id in held_out],
        eval_prompt_ids=sorted(held_out),
    )


def ids_hash(ids: Sequence[int]) -> str:
    """A short, order-independent fingerprint of a set of ids (recorded instead of long id lists)."""
    text = ",".join(str(i) for i in sorted(ids))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# The input text: rendered prompt + completion, truncated from the left of the prompt
# --------------------------------------------------------------------------------------------------


def render_plain(chat: Chat) -> str:
    """The rendering for tokenizers without a chat template (e.g. BERT-like encoders): one
    ``role: content`` line per message, then ``assistant: `` before the completion."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in chat) + "assistant: "


def plain_chat_template(tokenizer) -> str:
    """A chat template that renders exactly what :func:`encode` feeds a tokenizer without one: the
    tokenizer's opening special tokens, :func:`render_plain`'s lines, the completion, the closing special
    tokens. Saved with a reward model trained on such a backbone (trainer/model_files.py), so that TRL's
    trainers and plain ``apply_chat_template`` read its inputs as PrefLab trained on them."""
    prefix, suffix = (
        "".join(tokenizer.convert_ids_to_tokens(ids)) for ids in _special_tokens_around(tokenizer)
    )
    return (
        prefix + "{% for message in messages %}"
        "{% if loop.last and message['role'] == 'assistant' %}"
        "{{ 'assistant: ' + message['content'] }}" + suffix + "{% else %}"
        "{{ message['role'] + ': ' + message['content'] + '\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )


def truncate(prompt_ids: Sequence[int], completion_ids: Sequence[int], max_length: int) -> list[int]:
    """Join prompt and completion tokens into at most ``max_length`` tokens.

    Keeps the WHOLE completion and the END of the prompt (its last turn, nearest the completion): the
    prompt is cut on the left. A completion longer than ``max_length`` alone keeps its start, and no prompt.
    """
    if max_length <= 0:
        return []
    if len(completion_ids) >= max_length:
        return list(completion_ids[:max_length])
    keep = max_length - len(completion_ids)
    return list(prompt_ids[max(0, len(prompt_ids) - keep) :]) + list(completion_ids)


def _special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """What the tokenizer adds around one sequence (BERT: [CLS] ... [SEP]; Llama: <s> ...), found by
    encoding a probe with and without special tokens."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return [], []


def encode(tokenizer, prompt: Chat | str, completion: str, max_length: int) -> list[int]:
    """Token ids of one (prompt, completion) as the reward model reads them, at most ``max_length`` long.

    With a chat template: the chat with the completion as the assistant turn, rendered by the template
    (which brings its own BOS and end-of-turn tokens). Without: :func:`render_plain` + completion, wrapped
    in the tokenizer's usual special tokens. Prompt and completion are tokenized separately so that
    :func:`truncate` can cut the prompt alone.
    """
    chat = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if getattr(tokenizer, "chat_template", None):
        prompt_text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(
            [*chat, {"role": "assistant", "content": completion}], tokenize=False
        )
        # The assistant turn as the template writes it (with its end-of-turn marker), when the template
        # renders the prompt as a prefix of the whole chat; else the bare completion.
        completion_text = full_text[len(prompt_text) :] if full_text.startswith(prompt_text) else completion
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
        # The template's opening and closing special tokens ([CLS] ... [SEP]) survive any cut, as the
        # tokenizer's own do below, so a reward model saved with plain_chat_template reads the same ids.
        specials = set(tokenizer.all_special_ids)
        opening = next((i for i, t in enumerate(prompt_ids) if t not in specials), len(prompt_ids))
        closing = len(completion_ids)
        while closing > 0 and completion_ids[closing - 1] in specials:
            closing -= 1
        prefix, prompt_ids = prompt_ids[:opening], prompt_ids[opening:]
        completion_ids, suffix = completion_ids[:closing], completion_ids[closing:]
    else:
        prefix, suffix = _special_tokens_around(tokenizer)
        prompt_ids = tokenizer(render_plain(chat), add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    budget = max_length - len(prefix) - len(suffix)
    return prefix + truncate(prompt_ids, completion_ids, budget) + suffix


def split_counts(split: Split) -> dict[str, int]:
    """Counts recorded in preflab.json and logged at the start."""

    def pairs(rankings: list[Ranking]) -> int:
        return sum(len(r.pairs) for r in rankings)

    return {
        "rankings_train": len(split.train),
        "rankings_eval": len(split.eval),
        "pairs_train": pairs(split.train),
        "pairs_eval": pairs(split.eval),
        "prompts_train": len({r.prompt_id for r in split.train}),
        "prompts_eval": len(split.eval_prompt_ids),
        "completions_train": sum(len(r.completions) for r in split.train),
        "max_k": max((len(r.completions) for r in split.train + split.eval), default=0),
    }


def steps_per_epoch(n_rankings: int, batch_rankings: int, accumulation: int, processes: int = 1) -> int:
    """Optimizer steps in one epoch (each process sees ceil(batches / processes) micro-batches)."""
    batches = math.ceil(math.ceil(n_rankings / batch_rankings) / processes)
    return math.ceil(batches / accumulation)
