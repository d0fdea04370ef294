"""How far a fine-tuned policy moved from its reference: KL(policy || reference) on the policy's own
samples, in nats per completion (the quantity PPO's KL penalty and budget are in)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM

from trainer.finetune import IGNORE, Chat, TrainablePolicy, pad_batch

KL_CHUNK = 4
"""Completions per forward when measuring the KL: two full-vocabulary logit tensors each."""


@torch.no_grad()
def sampled_kl(
    model,
    policy: TrainablePolicy,
    prompts: Sequence[Chat],
    *,
    samples: int,
    max_new_tokens: int,
    lora: bool,
    device,
) -> float:
    """KL(policy || reference) in nats per completion, on ``samples`` completions the trained policy
    samples (at temperature 1: its own distribution) for the given prompts, in turn.

    Along each sampled answer the exact KL of the two next-token distributions is summed (the sequence
    KL's chain rule): never negative, and far less noisy than the difference of the sampled tokens'
    log-probs, which needs many samples to settle."""
    tokenizer = policy.tokenizer
    model.eval()
    chosen = [prompts[i % len(prompts)] for i in range(samples)]
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in chosen]
    encoded = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True).to(device)
    out = model.generate(
        **encoded,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
    )
    width = encoded["input_ids"].shape[1]
    stops = {tokenizer.eos_token_id, *_as_list(model.generation_config.eos_token_id)}
    sequences = []
    for row, prompt_ids, prompt_mask in zip(
        out, encoded["input_ids"], encoded["attention_mask"], strict=True
    ):
        answer = []
        for token in row[width:].tolist():
            answer.append(token)
            if token in stops:
                break
        sequences.append((prompt_ids[prompt_mask.bool()].tolist(), answer))
    reference = None
    if not lora:  # the starting weights, from disk: the trained ones replaced them in memory
        reference = AutoModelForCausalLM.from_pretrained(
            policy.model_dir, local_files_only=True, dtype=torch.float32
        )
        reference.to(device).eval()
    total = 0.0
    for start in range(0, len(sequences), KL_CHUNK):
        batch = pad_batch(sequences[start : start + KL_CHUNK], tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        policy_logits = _answer_logits(model, batch)
        if reference is None:
            with model.disable_adapter():
                reference_logits = _answer_logits(model, batch)
        else:
            reference_logits = _answer_logits(reference, batch)
        log_p = torch.log_softmax(policy_logits, -1)
        log_q = torch.log_softmax(reference_logits, -1)
        per_token = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, T)
        total += (per_token * (batch["labels"][:, 1:] != IGNORE)).sum().item()
    return total / len(sequences)


def _answer_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Float logits (B, T - 1, V) predicting tokens 1..T (the labels' positions)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
