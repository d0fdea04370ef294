"""Supervised fine-tuning on demonstrations (InstructGPT's step 1; TRL's `SFTTrainer`).

    result = train_sft(SFTConfig(epochs=2), load_demonstrations("demos.jsonl"), Path("out/sft"))

How a run goes:

1. Hold out whole prompts (a seeded share) to measure the loss on answers the model never saw.
2. Load the policy (whole, or with LoRA adapters) and encode each demonstration as the chat template
   writes it; only the answer's tokens are learnt (the prompt's labels are ignored).
3. Train through ``accelerate``: the loss is the mean over the batch's answer tokens, as TRL's. The
   held-out loss is measured before training and after every epoch. Checkpoints go to
   ``out_dir/checkpoint/`` and a re-run resumes from there.
4. Save a plain causal LM (adapters merged) with ``preflab.json``: the worker generates with it as is.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from trainer.checkpoint import CHECKPOINT_DIR
from trainer.data import Demonstration
from trainer.finetune import (
    FinetuneResult,
    answer_logprobs,
    encode_answer,
    load_trainable_policy,
    mixed_precision,
    pad_batch,
    prepare_run,
    save_policy,
    split_prompt_ids,
)

log = logging.getLogger("preflab.sft")

RESUME_IGNORED_FIELDS = ("checkpoint_every", "log_every", "keep_checkpoint")


@dataclass
class SFTConfig:
    policy: str = "default"
    """"default" (the bundled SmolLM2-135M-Instruct) or a local Hugging Face causal LM directory."""
    cache_dir: str = "data/cache"
    epochs: int = 2
    learning_rate: float = 2e-5
    batch_size: int = 8
    """Demonstrations per optimizer step (per micro-batch with gradient accumulation)."""
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    lora_r: int = 0
    lora_alpha: int = 16
    lora_target_modules: str = "all-linear"
    gradient_checkpointing: bool = False
    eval_fraction: float = 0.1
    seed: int = 0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_steps: int | None = None
    checkpoint_every: int = 50
    log_every: int = 1
    keep_checkpoint: bool = False


SFTResult = FinetuneResult


def train_sft(
    config: SFTConfig,
    demonstrations: Sequence[Demonstration],
    out_dir: Path | str,
    *,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_source: dict | None = None,
    held_out_prompt_ids: Collection[int] | None = None,
) -> SFTResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = on_metrics or (lambda metrics: None)
    stop_requested = should_stop or (lambda: False)
    if not demonstrations:
        raise ValueError("no demonstrations to train on")

    # 1. hold out whole prompts (the server's choice when it queued the run: ``held_out_prompt_ids``)
    held_out = (
        set(held_out_prompt_ids)
        if held_out_prompt_ids is not None
        else split_prompt_ids([d.prompt_id for d in demonstrations], config.eval_fraction, config.seed)
    )
    train_demos = [d for d in demonstrations if d.prompt_id not in held_out]
    eval_demos = [d for d in demonstrations if d.prompt_id in held_out]
    if not train_demos:
        raise ValueError("every demonstration's prompt is held out for evaluation: nothing left to train on")

    # 2. the policy, and every demonstration as (prompt tokens, answer tokens)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=mixed_precision(config.mixed_precision),
    )
    set_seed(config.seed)
    policy = load_trainable_policy(
        config.policy, config.cache_dir, config, gradient_checkpointing=config.gradient_checkpointing
    )
    tokenizer, model = policy.tokenizer, policy.model
    encode = lambda d: encode_answer(tokenizer, d.prompt, d.answer, config.max_length)  # noqa: E731
    train_data = [encode(d) for d in train_demos]
    eval_data = [encode(d) for d in eval_demos]
    pad_id = tokenizer.pad_token_id

    # 3. optimizer and schedule
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    fingerprint = _fingerprint(demonstrations)
    run = prepare_run(
        accelerator,
        model,
        config,
        n_items=len(train_data),
        checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint,
        ignored=RESUME_IGNORED_FIELDS,
    )
    model, state = run.model, run.state

    def held_out_loss() -> dict[str, float]:
        if not eval_data:
            return {}
        model.eval()
        total, tokens = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(eval_data), config.batch_size):
                batch = _to(pad_batch(eval_data[start : start + config.batch_size], pad_id), accelerator)
                logprobs, counts = answer_logprobs(model, batch)
                total -= logprobs.sum().item()
                tokens += int(counts.sum().item())
        model.train()
        return {"loss/eval": total / max(tokens, 1)}

    def loss_of(indices: list[int]) -> tuple[torch.Tensor, dict[str, float], float]:
        """The mean negative log-likelihood of the batch's answer tokens (weighted by their count)."""
        batch = _to(pad_batch([train_data[i] for i in indices], pad_id), accelerator)
        logprobs, counts = answer_logprobs(model, batch)
        tokens = counts.sum().clamp(min=1)
        loss = -logprobs.sum() / tokens
        return loss, {"loss/train": loss.item()}, float(tokens)

    loop = run.loop(
        accelerator,
        config,
        n_items=len(train_data),
        loss_of=loss_of,
        evaluate=held_out_loss,
        emit=emit,
        should_stop=stop_requested,
    )
    if state.step == 0 and eval_data:
        before = held_out_loss()
        loop.metrics["loss/eval_before"] = before["loss/eval"]
        emit({"step": 0, "epoch": 0.0, **before})
    if loop.run():
        log.info("stopped at step %d; checkpoint saved", state.step)
        return SFTResult(out_dir=out_dir, metrics=loop.metrics, step=state.step, stopped=True)
    metrics = loop.metrics

    # 4. save: the final held-out loss, a plain causal LM, preflab.json
    if eval_data and "loss/eval" not in metrics:
        metrics |= held_out_loss()
    metrics |= {"data/train_demonstrations": len(train_data), "data/eval_demonstrations": len(eval_data)}
    record = {
        "kind": "sft",
        "config": asdict(config),
        "policy_dir": str(policy.model_dir),
        "step": state.step,
        "data": {"source": data_source, "fingerprint": fingerprint, "eval_prompt_ids": sorted(held_out)},
        "metrics": metrics,
    }
    save_policy(accelerator, model, tokenizer, out_dir, lora=bool(config.lora_r), record=record)
    if not config.keep_checkpoint and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return SFTResult(out_dir=out_dir, metrics=metrics, step=state.step)


def _to(batch: dict[str, torch.Tensor], accelerator: Accelerator) -> dict[str, torch.Tensor]:
    return {key: value.to(accelerator.device) for key, value in batch.items()}


def _fingerprint(demonstrations: Sequence[Demonstration]) -> str:
    """The data a checkpoint belongs to: a re-claimed job resumes only on the same demonstrations."""
    keys = sorted(f"{d.prompt_id}:{d.demonstration_id}:{len(d.answer)}" for d in demonstrations)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
