"""Generate K distinct completions per chat prompt, for labelers to rank.

How a call runs, top to bottom:

1. Render each chat with the tokenizer's chat template and tokenize it once.
2. Draw K samples of every prompt in ONE ``model.generate`` call: the prompts are left-padded into one
   batch with a real attention mask, prefilled once, and each is repeated K times, KV cache included
   (see :func:`_sample` for why not ``num_return_sequences=K``).
3. Re-sample any completion that is empty or a twin of another completion of the same prompt (compared
   after ``.strip()``), with a fresh derived seed, a bounded number of times: labelers never rank twins.

Seeding. ``generate`` would draw every row from the one global torch RNG, so a completion would depend on
which other prompts shared its batch. Instead every completion gets its own seed, derived from
``(seed, rendered prompt, slot, attempt)``, and its own ``torch.Generator`` (see
:class:`trainer.sampling.PerRowSampler`).
A completion is therefore a function of (model, prompt, seed, sampling settings) alone: batching,
batch size, re-sampling one twin or the one-by-one loop reproduce it, up to floating-point differences
between batch shapes. The seed is recorded on each :class:`Generated`.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import torch
from transformers import Cache, LogitsProcessorList, PreTrainedModel, StoppingCriteriaList

from trainer.policy import Policy
from trainer.sampling import PerRowSampler, StepCallback, StepReporter

Chat = list[dict[str, str]]
"""A prompt: chat messages such as ``[{"role": "user", "content": "..."}]``."""

DEFAULT_MAX_ATTEMPTS = 4
"""Draws per completion slot (the first plus re-samples) before giving up on twins or empty text."""

T = TypeVar("T")


@dataclass(frozen=True)
class Generated:
    """One completion of one prompt."""

    text: str
    """Decoded new tokens only, special tokens skipped."""
    seed: int
    """Seed of this completion's own sampler: with the same model, prompt and settings it reproduces it."""
    num_tokens: int
    """Tokens the model generated, counting the EOS token when one was reached."""
    finished: bool
    """True when the model emitted EOS; False when it hit ``max_new_tokens``."""
    attempt: int = 0
    """0 for the first draw; n when this slot was re-sampled n times (twin or empty text)."""


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float
    top_p: float
    max_new_tokens: int

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); greedy decoding gives twins")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")


class DuplicateCompletionsError(RuntimeError):
    """The model kept producing twins (or empty text) for one prompt after every allowed re-sample."""

    def __init__(self, prompt_index: int, texts: Sequence[str], max_attempts: int) -> None:
        self.prompt_index = prompt_index
        self.texts = list(texts)
        distinct = len({text.strip() for text in texts if text.strip()})
        super().__init__(
            f"Prompt {prompt_index}: only {distinct} distinct non-empty completions out of k={len(texts)} "
            f"after {max_attempts} draws per slot; the model is too deterministic for this prompt. "
            f"Raise temperature or top_p, or lower k. Completions: {[t[:80] for t in self.texts]!r}"
        )


class PromptTooLongError(ValueError):
    """Some prompts exceed ``max_prompt_tokens``.

    Raised rather than truncating: labelers see the whole prompt, so the model must have seen it too.
    """

    def __init__(self, too_long: dict[int, int], max_prompt_tokens: int) -> None:
        self.too_long = too_long
        super().__init__(
            f"Prompts longer than max_prompt_tokens={max_prompt_tokens} (index: tokens): {too_long}"
        )


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def generate_completions(
    policy: Policy,
    prompts: list[Chat],
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    max_prompt_tokens: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    on_step: StepCallback | None = None,
    keep_partial: bool = False,
) -> list[list[Generated]]:
    """Return ``k`` distinct, non-empty completions for each prompt, in prompt order.

    All prompts go through one batched ``generate`` call (plus one more per re-sampling round, if any);
    split long lists with :func:`generate_in_batches`. Raises :class:`DuplicateCompletionsError` when a
    prompt still has twins after ``max_attempts`` draws per slot, and :class:`PromptTooLongError`.
    ``on_step`` is called after every decoding step (each re-sampling round counts its steps anew).
    ``keep_partial``: instead of raising, a prompt that still has twins keeps only its distinct, non-empty
    completions (fewer than ``k``), so one near-deterministic prompt does not sink the others.
    """
    return _generate_distinct(
        policy,
        prompts,
        k=k,
        settings=SamplingSettings(temperature, top_p, max_new_tokens),
        seed=seed,
        max_prompt_tokens=max_prompt_tokens,
        max_attempts=max_attempts,
        draw=partial(_sample, on_step=on_step),
        keep_partial=keep_partial,
    )


def generate_completions_naive(
    policy: Policy,
    prompts: list[Chat],
    *,
    k: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int,
    max_prompt_tokens: int | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> list[list[Generated]]:
    """Same contract and same seeds as :func:`generate_completions`, one ``generate`` call per completion.

    The baseline for the benchmark and the reference the batched path is tested against; not for
    production use.
    """
    return _generate_distinct(
        policy,
        prompts,
        k=k,
        settings=SamplingSettings(temperature, top_p, max_new_tokens),
        seed=seed,
        max_prompt_tokens=max_prompt_tokens,
        max_attempts=max_attempts,
        draw=_draw_one_by_one,
    )


def generate_in_batches(
    policy: Policy, prompts: list[Chat], *, batch_size: int, **kwargs: Any
) -> list[list[Generated]]:
    """:func:`generate_completions` (same keywords) over ``batch_size`` prompts per ``generate`` call.

    ``batch_size * k`` rows are decoded together, which bounds memory. Seeds do not depend on batching,
    so the result is the same for any ``batch_size``. A :class:`DuplicateCompletionsError` carries the
    prompt's index in the whole list.
    """
    results: list[list[Generated]] = []
    for start, batch in zip(range(0, len(prompts), batch_size), batched(prompts, batch_size), strict=True):
        try:
            results.extend(generate_completions(policy, batch, **kwargs))
        except DuplicateCompletionsError as exc:
            max_attempts = kwargs.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
            raise DuplicateCompletionsError(start + exc.prompt_index, exc.texts, max_attempts) from exc
    return results


def batched(items: Sequence[T], batch_size: int) -> Iterator[list[T]]:
    """Consecutive chunks of ``batch_size`` items; the last one may be shorter."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (got {batch_size})")
    for start in range(0, len(items), batch_size):
        yield list(items[start : start + batch_size])


def derive_seed(seed: int, prompt: str, slot: int, attempt: int) -> int:
    """Seed of completion ``slot`` of a rendered ``prompt``, draw number ``attempt``.

    Hashing the prompt text (not its position in the list) makes a completion independent of batching
    and ordering. 31 bits fit any SQL integer column and a JavaScript number.
    """
    key = f"{seed}\x00{slot}\x00{attempt}\x00{prompt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & 0x7FFF_FFFF


# --------------------------------------------------------------------------------------------------
# Draw, then re-sample twins
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prompt:
    text: str  # rendered chat, the key for seed derivation
    ids: list[int]


_Draw = Callable[[Policy, list[_Prompt], list[list[int]], SamplingSettings], list[list[Generated]]]
"""Given prompts and, per prompt, the seeds of the rows to draw: per prompt, one completion per seed."""


def _generate_distinct(
    policy: Policy,
    chats: list[Chat],
    *,
    k: int,
    settings: SamplingSettings,
    seed: int,
    max_prompt_tokens: int | None,
    max_attempts: int,
    draw: _Draw,
    keep_partial: bool = False,
) -> list[list[Generated]]:
    if k < 1 or max_attempts < 1:
        raise ValueError(f"k and max_attempts must be >= 1 (got k={k}, max_attempts={max_attempts})")
    if not chats:
        return []
    prompts = _encode_chats(policy, chats, max_prompt_tokens)

    # 1. first draw: k samples of every prompt
    first_seeds = [[derive_seed(seed, p.text, slot, 0) for slot in range(k)] for p in prompts]
    results = draw(policy, prompts, first_seeds, settings)

    # 2. re-sample twins and empty completions, only those slots, each with a fresh seed
    for attempt in range(1, max_attempts):
        redo = {i: _slots_to_resample(row) for i, row in enumerate(results)}
        redo = {i: slots for i, slots in redo.items() if slots}
        if not redo:
            return results
        seeds = [[derive_seed(seed, prompts[i].text, s, attempt) for s in slots] for i, slots in redo.items()]
        redrawn = draw(policy, [prompts[i] for i in redo], seeds, settings)
        for (i, slots), new_row in zip(redo.items(), redrawn, strict=True):
            for slot, new in zip(slots, new_row, strict=True):
                results[i][slot] = replace(new, attempt=attempt)

    # 3. never hand labelers twins: keep only the distinct ones, or give up loudly
    for i, row in enumerate(results):
        if redo := set(_slots_to_resample(row)):
            if not keep_partial:
                raise DuplicateCompletionsError(i, [g.text for g in row], max_attempts)
            results[i] = [generated for slot, generated in enumerate(row) if slot not in redo]
    return results


def _slots_to_resample(row: list[Generated]) -> list[int]:
    """Slots whose text is empty or repeats an earlier slot's text (the first occurrence is kept)."""
    seen: set[str] = set()
    slots = []
    for slot, generated in enumerate(row):
        text = generated.text.strip()
        if not text or text in seen:
            slots.append(slot)
        seen.add(text)
    return slots


def _encode_chats(policy: Policy, chats: list[Chat], max_prompt_tokens: int | None = None) -> list[_Prompt]:
    """Render chats with the chat template (ending in the assistant's turn) and tokenize them.

    ``add_special_tokens=False``: the template already writes BOS and role markers, as
    ``apply_chat_template(tokenize=True)`` does.
    """
    tokenizer = policy.tokenizer
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    if max_prompt_tokens is not None:
        too_long = {i: len(row) for i, row in enumerate(ids) if len(row) > max_prompt_tokens}
        if too_long:
            raise PromptTooLongError(too_long, max_prompt_tokens)
    return [_Prompt(text, row) for text, row in zip(texts, ids, strict=True)]


# --------------------------------------------------------------------------------------------------
# The two ways to draw: batched, and one call per completion
# --------------------------------------------------------------------------------------------------


def _draw_one_by_one(
    policy: Policy, prompts: list[_Prompt], seeds: list[list[int]], settings: SamplingSettings
) -> list[list[Generated]]:
    """One ``generate`` call per completion: the naive baseline."""
    return [
        [_sample(policy, [prompt], [[seed]], settings)[0][0] for seed in row]
        for prompt, row in zip(prompts, seeds, strict=True)
    ]


@torch.inference_mode()
def _sample(
    policy: Policy,
    prompts: list[_Prompt],
    seeds: list[list[int]],
    settings: SamplingSettings,
    on_step: StepCallback | None = None,
) -> list[list[Generated]]:
    """Sample one completion per seed, ``seeds[i]`` for prompt ``i``, in one ``generate`` call (the
    batched draw; the naive one calls it once per completion).

    The prompts are left-padded into one batch and prefilled once (:func:`_prefill_once`); then each
    prompt's row and KV cache are repeated once per seed, and ``generate`` decodes all rows together.
    ``num_return_sequences`` is not used: it repeats the prompt rows before the prefill (so each prompt
    would be prefilled K times), and ``generate`` allows it only when it samples itself, whereas here
    PerRowSampler samples and ``generate`` runs greedy behind it, its own choice a cheap argmax.
    """
    tokenizer, model = policy.tokenizer, policy.model
    prompt_ids = [prompt.ids for prompt in prompts]
    batch = tokenizer.pad({"input_ids": prompt_ids}, padding=True, return_tensors="pt").to(model.device)
    prompt_of_row = torch.arange(len(seeds), device=model.device).repeat_interleave(
        torch.tensor([len(row) for row in seeds], device=model.device)
    )  # (R,) prompt-major: prompt 0's rows, then prompt 1's...
    flat_seeds = [seed for row in seeds for seed in row]  # (R,) in the same order
    cache = _prefill_once(model, batch["input_ids"], batch["attention_mask"])  # B rows, T-1 positions
    if cache is not None:
        cache.batch_select_indices(prompt_of_row)  # R rows
    input_ids = batch["input_ids"][prompt_of_row]  # (R, T), left-padded
    sequences = model.generate(
        input_ids=input_ids,
        attention_mask=batch["attention_mask"][prompt_of_row],  # (R, T)
        past_key_values=cache,
        do_sample=False,  # PerRowSampler has drawn the token and left it the only finite score
        num_beams=1,
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=list(policy.stop_token_ids),
        pad_token_id=tokenizer.pad_token_id,
        logits_processor=LogitsProcessorList(
            [PerRowSampler(flat_seeds, settings.temperature, settings.top_p, device=model.device)]
        ),
        stopping_criteria=StoppingCriteriaList(
            [StepReporter(on_step, settings.max_new_tokens)] if on_step else []
        ),
    )  # (R, T + new)
    new_tokens = sequences[:, input_ids.shape[1] :].tolist()  # (R, new)
    flat = [_decode(policy, tokens, seed) for tokens, seed in zip(new_tokens, flat_seeds, strict=True)]
    return _regroup(flat, [len(row) for row in seeds])


def _prefill_once(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> Cache | None:
    """The KV cache of every prompt but its last token, one row per prompt: each prompt is run once.

    Given this cache, ``generate`` runs only the last prompt token and the new ones. Positions follow
    generate's own rule for left padding (real tokens so far), so the completions are the same as
    without the cache. None (no sharing) when a prompt is a single token or the model takes no
    ``position_ids``.
    """
    base = model.base_model
    if input_ids.shape[1] < 2 or "position_ids" not in inspect.signature(base.forward).parameters:
        return None
    prefix_ids, prefix_mask = input_ids[:, :-1], attention_mask[:, :-1]  # (B, T-1)
    position_ids = (prefix_mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, T-1)
    out = base(input_ids=prefix_ids, attention_mask=prefix_mask, position_ids=position_ids, use_cache=True)
    return out.past_key_values


def _regroup(flat: list[Generated], sizes: list[int]) -> list[list[Generated]]:
    groups, start = [], 0
    for size in sizes:
        groups.append(flat[start : start + size])
        start += size
    return groups


def _decode(policy: Policy, tokens: list[int], seed: int) -> Generated:
    """Cut at the first stop token (what follows is padding) and decode the rest."""
    stop = next((i for i, token in enumerate(tokens) if token in policy.stop_token_ids), None)
    finished = stop is not None
    content = tokens[:stop] if finished else tokens
    text = policy.tokenizer.decode(content, skip_special_tokens=True)
    return Generated(text=text, seed=seed, num_tokens=len(content) + int(finished), finished=finished)
