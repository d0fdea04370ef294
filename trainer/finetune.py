"""What SFT and DPO share: loading the policy to train (whole, or with LoRA adapters), turning a chat and
an answer into tokens where only the answer is learnt, splitting by prompt, and saving the result as a
plain causal LM that the worker, transformers and vLLM load as they are."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import torch
import transformers
from accelerate import Accelerator
from torch import nn

from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.optim import adamw_with_warmup
from trainer.policy import load_policy, resolve_model_dir
from trainer.ppo_models import add_lora, disable_dropout
from trainer.reward_model import PREFLAB_JSON

IGNORE = -100
"""The label of a token that is not learnt (the prompt, padding): torch's cross-entropy skips it."""

Chat = list[dict[str, str]]

log = logging.getLogger("preflab.finetune")


class LoraSettings(Protocol):
    lora_r: int
    lora_alpha: int
    lora_target_modules: str


@dataclass
class TrainablePolicy:
    model: nn.Module
    tokenizer: Any
    model_dir: Path
    """Where the starting weights came from (the reference of DPO and of the KL it reports)."""


def load_trainable_policy(
    spec: str, cache_dir: str | Path, lora: LoraSettings, *, gradient_checkpointing: bool = False
) -> TrainablePolicy:
    """The policy in float32 on the CPU (accelerate moves it and handles mixed precision), dropout off so
    that the same tokens get the same log-probs in every pass, and with LoRA adapters when lora_r > 0.
    Gradient checkpointing trades a second forward per layer for not keeping its activations."""
    model_dir = resolve_model_dir(spec, Path(cache_dir).expanduser())
    loaded = load_policy(model_dir, device="cpu", dtype=torch.float32)
    model = loaded.model
    disable_dropout(model)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if lora.lora_r:
        model = add_lora(model, lora)
    model.train()
    return TrainablePolicy(model=model, tokenizer=loaded.tokenizer, model_dir=model_dir)


def encode_answer(tokenizer, prompt: Chat, answer: str, max_length: int) -> tuple[list[int], list[int]]:
    """(prompt tokens, answer tokens) for ``prompt`` answered by ``answer``, as the chat template writes
    the whole conversation: the answer's tokens end with the template's end of turn, so the model learns
    to stop. When the template does not keep the prompt as a prefix (some rewrite earlier turns), the
    answer is the prompt's generation prompt continued by the answer's tokens and EOS.

    Longer than ``max_length``: the answer keeps at least half of it, the prompt loses its oldest tokens.
    """
    prompt_ids = _tokens(
        tokenizer, tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    )
    whole = _tokens(
        tokenizer,
        tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": answer}], tokenize=False),
    )
    if whole[: len(prompt_ids)] == prompt_ids and len(whole) > len(prompt_ids):
        answer_ids = whole[len(prompt_ids) :]
    else:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    if len(prompt_ids) + len(answer_ids) > max_length:
        answer_ids = answer_ids[: max(max_length - len(prompt_ids), max_length // 2)]
        prompt_ids = prompt_ids[len(prompt_ids) - (max_length - len(answer_ids)) :]
    return prompt_ids, answer_ids


def _tokens(tokenizer, text: str) -> list[int]:
    """The template's text already holds its special tokens (as the PPO and reward code render it)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def pad_batch(sequences: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (the answer's tokens, IGNORE elsewhere)
    for (prompt, answer) token lists."""
    width = max(len(p) + len(a) for p, a in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (prompt, answer) in enumerate(sequences):
        tokens = prompt + answer
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, len(prompt) : len(tokens)] = torch.tensor(answer)
        attention_mask[row, : len(tokens)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def answer_logprobs(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sequence: the summed log-probs of its answer tokens (B,) and how many there are (B,).

    Only the positions from the batch's earliest answer token on get logits (``logits_to_keep``, as PPO's
    forward does): the vocabulary projection of the prompts' positions, which nothing uses, is much of a
    small model's forward and memory when prompts are long (SmolLM2: 49k logits a position)."""
    labels = batch["labels"]
    answer = labels != IGNORE
    width = labels.shape[1]
    first = int(torch.where(answer.any(1), answer.float().argmax(1), width - 1).min().clamp(min=1))
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        logits_to_keep=width - first + 1,
    ).logits[:, :-1]  # predictions of tokens first .. width - 1
    labels, answer = labels[:, first:], answer[:, first:]
    targets = labels.masked_fill(~answer, 0)
    logits = logits.float()
    token_logprobs = torch.gather(logits, -1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)
    return (token_logprobs * answer).sum(-1), answer.sum(-1)


def split_prompt_ids(prompt_ids: Sequence[int], eval_fraction: float, seed: int) -> set[int]:
    """The prompt ids held out for evaluation: a seeded share, whole prompts only (never a prompt in both
    halves), none when there are too few to spare."""
    distinct = sorted(set(prompt_ids))
    count = round(len(distinct) * eval_fraction)
    if eval_fraction <= 0 or len(distinct) < 2:
        return set()
    count = min(max(count, 1), len(distinct) - 1)
    return set(random.Random(seed).sample(distinct, count))


def mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def save_policy(
    accelerator: Accelerator, model: nn.Module, tokenizer, out_dir: Path, *, lora: bool, record: dict
) -> None:
    """A plain causal LM (adapters merged in) with its tokenizer and generation config, and preflab.json."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if lora:
            unwrapped = unwrapped.merge_and_unload()
        unwrapped.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        record = record | {
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out_dir / PREFLAB_JSON).write_text(json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()


# --------------------------------------------------------------------------------------------------
# The loop SFT and DPO share: epochs of shuffled batches, gradient accumulation, logging, checkpoints
# --------------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    batches_done: int = 0
    """Batches of the current epoch consumed by completed optimizer steps."""


def resume_state(
    accelerator: Accelerator, directory: Path, config: dict, *, ignored: Sequence[str], fingerprint: str
) -> LoopState:
    """The loop's place from ``directory`` when the checkpoint there is this run's (same config up to
    ``ignored``, same data); a fresh start otherwise."""
    saved = load_checkpoint(
        accelerator, directory, config, ignored=ignored, must_match={"data_fingerprint": fingerprint}
    )
    if saved is None:
        return LoopState()
    return LoopState(step=saved["step"], epoch=saved["epoch"], batches_done=saved["batches_done"])


def save_loop_state(
    accelerator: Accelerator, directory: Path, state: LoopState, config: dict, fingerprint: str
) -> None:
    save_checkpoint(
        accelerator, directory, {**asdict(state), "config": config, "data_fingerprint": fingerprint}
    )


@dataclass
class FinetuneResult:
    """What an SFT or DPO run hands back."""

    out_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    step: int = 0
    stopped: bool = False


@dataclass
class PreparedRun:
    """A run's optimizer and schedule prepared by accelerate, where it resumes from, and its checkpoint."""

    model: nn.Module
    optimizer: Any
    scheduler: Any
    state: LoopState
    total_steps: int
    checkpoint: Any

    def loop(self, accelerator: Accelerator, config: Any, **parts: Any) -> Loop:
        """The epoch loop over ``n_items`` with ``loss_of``, ``evaluate``, ``emit`` and ``should_stop``."""
        return Loop(
            accelerator=accelerator,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=self.state,
            batch_size=config.batch_size,
            total_steps=self.total_steps,
            seed=config.seed,
            max_grad_norm=config.max_grad_norm,
            log_every=config.log_every,
            checkpoint_every=config.checkpoint_every,
            checkpoint=self.checkpoint,
            **parts,
        )


def prepare_run(
    accelerator: Accelerator,
    model: nn.Module,
    config: Any,
    *,
    n_items: int,
    checkpoint_dir: Path,
    fingerprint: str,
    ignored: Sequence[str],
) -> PreparedRun:
    """AdamW over the trainable weights (fused where supported), a linear schedule with warm-up over the
    run's optimizer steps (``max_steps``, else ``epochs`` of ``n_items``), prepared by accelerate; the loop
    state of a checkpoint in ``checkpoint_dir`` that belongs to this run (same config and data)."""
    batches_per_epoch = -(-n_items // config.batch_size)
    total_steps = config.max_steps or config.epochs * max(
        1, batches_per_epoch // config.gradient_accumulation_steps
    )
    optimizer, scheduler = adamw_with_warmup(
        accelerator,
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total_steps,
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state = resume_state(
        accelerator, checkpoint_dir, asdict(config), ignored=ignored, fingerprint=fingerprint
    )
    if state.step:
        log.info("resumed from %s at step %d", checkpoint_dir, state.step)

    def checkpoint() -> None:
        save_loop_state(accelerator, checkpoint_dir, state, asdict(config), fingerprint)

    return PreparedRun(model, optimizer, scheduler, state, total_steps, checkpoint)


@dataclass
class Loop:
    """One run's moving parts. ``loss_of(indices)`` returns the batch's loss, its figures (to average over
    the logging window) and their weight (answer tokens for SFT, pairs for DPO); ``evaluate()`` the
    held-out figures, run after every epoch."""

    accelerator: Accelerator
    model: nn.Module
    optimizer: Any
    scheduler: Any
    state: LoopState
    n_items: int
    batch_size: int
    total_steps: int
    seed: int
    max_grad_norm: float
    log_every: int
    checkpoint_every: int
    loss_of: Any
    evaluate: Any
    emit: Any
    should_stop: Any
    checkpoint: Any
    metrics: dict[str, float] = field(default_factory=dict)

    def run(self) -> bool:
        """Train until ``total_steps``; True when stopped early (a checkpoint is then saved)."""
        state, accelerator = self.state, self.accelerator
        window: dict[str, float] = {}
        weight_sum, started = 0.0, time.monotonic()
        while state.step < self.total_steps:
            order = torch.randperm(
                self.n_items, generator=torch.Generator().manual_seed(self.seed + state.epoch)
            )
            batches = [
                order[i : i + self.batch_size].tolist() for i in range(0, self.n_items, self.batch_size)
            ]
            micro = state.batches_done
            for indices in batches[state.batches_done :]:
                if self.should_stop():
                    self.checkpoint()
                    return True
                with accelerator.accumulate(self.model):
                    loss, figures, weight = self.loss_of(indices)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
                    self.optimizer.step()
                    self.scheduler.step()
                    self.optimizer.zero_grad()
                micro += 1
                for key, value in figures.items():
                    window[key] = window.get(key, 0.0) + value * weight
                weight_sum += weight
                if not accelerator.sync_gradients:
                    continue
                state.step += 1
                state.batches_done = micro
                if state.step % self.log_every == 0 or state.step == self.total_steps:
                    elapsed = max(time.monotonic() - started, 1e-9)
                    logged = {key: value / max(weight_sum, 1e-9) for key, value in window.items()}
                    logged |= {
                        "step": state.step,
                        "epoch": round(state.epoch + micro / len(batches), 4),
                        "train/lr": self.scheduler.get_last_lr()[0],
                        "time/steps_per_second": self.log_every / elapsed,
                    }
                    self.metrics |= logged
                    self.emit(logged)
                    window, weight_sum, started = {}, 0.0, time.monotonic()
                if state.step % self.checkpoint_every == 0:
                    self.checkpoint()
                if state.step >= self.total_steps:
                    break
            if micro == len(batches):  # the epoch ran to its end
                state.epoch += 1
                state.batches_done = 0
                if held_out := self.evaluate():
                    self.metrics |= held_out
                    self.emit({"step": state.step, "epoch": float(state.epoch), **held_out})
        return False
