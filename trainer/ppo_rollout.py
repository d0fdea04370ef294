"""PPO's rollouts: which prompts a step takes, one sampled completion per prompt with the policy's
log-probs and entropies (from the sampling's own logits), its reward-model score, and the reference's
log-probs to compare with; held-out evaluations are rollouts too. A stop asked for mid-sampling
interrupts between decoding steps."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import StoppingCriteriaList

from trainer.data import Chat
from trainer.ppo_config import PPOConfig
from trainer.ppo_models import forward_logprobs, token_logprobs
from trainer.sampling import StepCallback, StepReporter

log = logging.getLogger("preflab.ppo")


class StepInterrupted(Exception):
    """``should_stop`` said stop in the middle of a step or an evaluation."""


def interrupt_on(should_stop: Callable[[], bool]) -> Callable[..., None]:
    """A check to call anywhere in a step (as a ``StepCallback`` too): raises once a stop is asked for."""

    def interrupt(*_progress: int) -> None:
        if should_stop():
            raise StepInterrupted

    return interrupt


def prompt_indices(n_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The prompts of step ``step``: consecutive slices of one seeded permutation per pass."""
    out = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, n_prompts)
        order = list(range(n_prompts))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        out.append(order[offset])
        position += 1
    return out


@dataclass
class Rollout:
    query: torch.Tensor  # (B, P) left-padded prompt ids
    query_mask: torch.Tensor  # (B, P)
    response: torch.Tensor  # (B, R) completion ids, pad after the first EOS
    response_mask: torch.Tensor  # (B, R) 1 up to and including the first EOS
    finished: torch.Tensor  # (B,) bool: an EOS was sampled
    texts: list[str]
    logprobs: torch.Tensor  # (B, R) of the sampled tokens under the sampling policy, 0 after the EOS
    entropy: torch.Tensor  # (B, R) of its temperature-scaled distribution at each position

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query, self.response], dim=1)  # (B, P + R)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)  # (B, P + R)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    stop_ids,
    prompt_ids: list[list[int]],
    config: PPOConfig,
    device,
    on_step: StepCallback | None = None,
) -> Rollout:
    """One completion per prompt with ``model.generate`` (left padding, attention mask); ``on_step`` is
    called after every decoding step (and may raise to end the sampling).

    The log-probs and entropies of the sampled tokens come from the logits ``generate`` computed anyway
    (raw, before temperature and top-p: the full distribution scaled by the temperature, as the update's
    forward sees it), which saves the rollout a forward pass of the policy; TRL does the same. They agree
    with a fresh forward over prompt + completion to float rounding (tested).
    """
    longest = max(len(ids) for ids in prompt_ids)
    query = torch.full((len(prompt_ids), longest), tokenizer.pad_token_id, dtype=torch.long)
    query_mask = torch.zeros_like(query)
    for row, ids in enumerate(prompt_ids):
        query[row, longest - len(ids) :] = torch.tensor(ids)
        query_mask[row, longest - len(ids) :] = 1
    query, query_mask = query.to(device), query_mask.to(device)
    output = model.generate(
        input_ids=query,
        attention_mask=query_mask,
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,  # [Huang §7: sample from the full distribution]
        max_new_tokens=config.max_new_tokens,
        eos_token_id=list(stop_ids),
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
        stopping_criteria=StoppingCriteriaList(
            [StepReporter(on_step, config.max_new_tokens)] if on_step else []
        ),
    )
    response = output.sequences[:, longest:]  # (B, R)
    is_stop = torch.isin(response, torch.tensor(stop_ids, device=device))  # (B, R)
    finished = is_stop.any(dim=1)  # (B,)
    first_stop = torch.where(finished, is_stop.float().argmax(dim=1), response.shape[1])  # (B,)
    positions = torch.arange(response.shape[1], device=device).unsqueeze(0)  # (1, R)
    response_mask = (positions <= first_stop.unsqueeze(1)).long()  # (B, R) includes the EOS token
    response = torch.where(response_mask.bool(), response, tokenizer.pad_token_id)
    texts = [
        tokenizer.decode(row[mask.bool()], skip_special_tokens=True)
        for row, mask in zip(response, response_mask, strict=True)
    ]
    # one (B, V) slice per sampled position: normalise each on its own rather than stacking (B, R, V)
    per_position = [
        token_logprobs(logits, response[:, t], config.temperature) for t, logits in enumerate(output.logits)
    ]
    logprobs, entropy = zip(*per_position, strict=True)
    logprobs = torch.stack(logprobs, dim=1) * response_mask  # (B, R)
    entropy = torch.stack(entropy, dim=1) * response_mask  # (B, R)
    return Rollout(query, query_mask, response, response_mask, finished, texts, logprobs, entropy)


EVAL_SEED_OFFSET = 1_000_003
"""Every held-out evaluation reseeds with ``seed + EVAL_SEED_OFFSET``."""

Batch = Sequence[tuple[Chat, list[int]]]
"""Prompts with their token ids (rendered with the policy's chat template)."""


class Models:
    """What a run samples, scores and compares with: the policy (prepared by accelerate), its frozen
    reference (a copy, or with LoRA the policy with its adapters off), the reward model."""

    def __init__(
        self, config: PPOConfig, accelerator: Accelerator, policy, reference, scorer, loaded, interrupt
    ):
        self.config = config
        self.accelerator = accelerator
        self.policy = policy
        self.reference = reference
        self.scorer = scorer
        self.tokenizer = loaded.tokenizer
        self.stop_ids = loaded.stop_token_ids
        self.interrupt = interrupt

    @contextmanager
    def as_reference(self) -> Iterator:
        if self.reference is not None:
            yield self.reference
            return
        peft_policy = self.accelerator.unwrap_model(self.policy)
        with peft_policy.disable_adapter():
            yield peft_policy

    def reference_logprobs(self, input_ids, attention_mask, response) -> torch.Tensor:
        with self.as_reference() as reference:
            logprobs, _ = forward_logprobs(
                reference, input_ids, attention_mask, response, self.config.temperature
            )
            return logprobs

    def generate(self, model, batch: Batch) -> Rollout:
        prompt_ids = [ids for _, ids in batch]
        unwrapped = self.accelerator.unwrap_model(model)
        device = self.accelerator.device
        return sample(
            unwrapped, self.tokenizer, self.stop_ids, prompt_ids, self.config, device, on_step=self.interrupt
        )

    def generate_and_score(self, model, batch: Batch) -> tuple[Rollout, torch.Tensor]:
        rollout = self.generate(model, batch)
        return rollout, self.scorer([chat for chat, _ in batch], rollout.texts)  # (B,)


def render_prompts(tokenizer, chats: Sequence[Chat], max_tokens: int) -> list[tuple[Chat, list[int]]]:
    """Prompts rendered with the policy's chat template; longer than ``max_tokens`` ones dropped."""
    kept = []
    for chat in chats:
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            kept.append((chat, ids))
    if len(kept) < len(chats):
        log.warning("dropped %d prompts longer than %d tokens", len(chats) - len(kept), max_tokens)
    return kept


@torch.no_grad()
def evaluate(models: Models, model, eval_set: Batch, *, kl: bool = True) -> tuple[float, float]:
    """Mean RM score (raw, no EOS penalty) and mean KL to the reference (nats per completion) of
    ``model`` on the held-out prompts; ``kl=False``: ``model`` is the reference (KL 0). Every evaluation
    reseeds alike, so all sample the held-out prompts the same way."""
    set_seed(models.config.seed + EVAL_SEED_OFFSET)
    scores, kls = [], []
    for start in range(0, len(eval_set), models.config.eval_batch_size):
        batch = eval_set[start : start + models.config.eval_batch_size]
        rollout, raw_scores = models.generate_and_score(model, batch)
        scores.extend(raw_scores.tolist())
        if not kl:
            kls.extend([0.0] * len(batch))
            continue
        ids, attn, mask = rollout.input_ids, rollout.attention_mask, rollout.response_mask.float()
        ref_logp = models.reference_logprobs(ids, attn, rollout.response)
        kls.extend(((rollout.logprobs - ref_logp) * mask).sum(dim=1).tolist())
    return sum(scores) / len(scores), sum(kls) / len(kls)
