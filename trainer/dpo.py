"""Direct Preference Optimization on a project's comparisons (Rafailov et al. 2023; TRL's `DPOTrainer`).

    result = train_dpo(DPOConfig(beta=0.1), load_pairs("pairs.jsonl"), Path("out/dpo"))

No reward model and no sampling: the policy is trained so that its log-probability ratio to a frozen
reference (the starting policy) is higher on the chosen answer than on the rejected one.

1. Hold out whole prompts (seeded) to measure preference accuracy on pairs never trained on.
2. Load the policy (whole, or with LoRA adapters) and encode each pair's prompt + chosen and
   prompt + rejected; only the answers' tokens count.
3. Score every pair under the reference ONCE, before the first step (the starting policy is the
   reference; with LoRA, the policy with its adapters off), and keep the figures on disk: no second model
   sits in memory during training, and a resumed run reads them back.
4. Train through ``accelerate``, chosen and rejected in one forward pass: sigmoid loss (with optional
   label smoothing, "robust DPO") or IPO. Logged as TRL does: loss, implicit rewards of chosen and
   rejected and their margin, preference accuracy, answer log-probs. Held-out figures after each epoch.
5. Measure the KL to the reference on completions the trained policy samples for held-out prompts, and
   save a plain causal LM with ``preflab.json``.
"""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed

from trainer.checkpoint import CHECKPOINT_DIR
from trainer.data import PreferencePair
from trainer.dpo_reference import REFERENCE_FILE, reference_logps
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
from trainer.intervals import accuracy_with_interval
from trainer.policy_kl import sampled_kl

log = logging.getLogger("preflab.dpo")

RESUME_IGNORED_FIELDS = ("checkpoint_every", "log_every", "keep_checkpoint", "kl_samples", "max_new_tokens")
LOSS_TYPES = ("sigmoid", "ipo")


@dataclass
class DPOConfig:
    policy: str = "default"
    """"default" (the bundled SmolLM2-135M-Instruct) or a local Hugging Face causal LM directory; it is
    also the frozen reference."""
    cache_dir: str = "data/cache"
    beta: float = 0.1
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    """The assumed share of flipped labels (conservative / robust DPO); sigmoid loss only."""
    epochs: int = 1
    learning_rate: float = 1e-6
    batch_size: int = 8
    """Pairs per optimizer step (per micro-batch with gradient accumulation)."""
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    lora_r: int = 0
    lora_alpha: int = 16
    lora_target_modules: str = "all-linear"
    gradient_checkpointing: bool = False
    eval_fraction: float = 0.1
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_steps: int | None = None
    checkpoint_every: int = 50
    log_every: int = 1
    keep_checkpoint: bool = False
    kl_samples: int = 16
    """Completions the trained policy samples for held-out prompts to measure its KL to the reference
    (0: not measured)."""
    max_new_tokens: int = 128


DPOResult = FinetuneResult


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    *,
    beta: float,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses, and the implicit rewards beta * log(pi / ref) of chosen and rejected.

    sigmoid: -log sigmoid(beta * h) (1 - eps) - log sigmoid(-beta * h) eps, with h the difference of the
    two log-ratios [Rafailov et al. eq. 7; eps: Mitchell 2023]. ipo: (h - 1 / (2 beta))^2 [Azar et al.],
    on log-probs averaged over the answer's tokens as TRL does (the caller passes them so)."""
    logits = (policy_chosen - policy_rejected) - (reference_chosen - reference_rejected)
    if loss_type == "sigmoid":
        losses = (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            - F.logsigmoid(-beta * logits) * label_smoothing
        )
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {loss_type!r}")
    chosen_rewards = beta * (policy_chosen - reference_chosen).detach()
    rejected_rewards = beta * (policy_rejected - reference_rejected).detach()
    return losses, chosen_rewards, rejected_rewards


def train_dpo(
    config: DPOConfig,
    pairs: Sequence[PreferencePair],
    out_dir: Path | str,
    *,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    data_source: dict | None = None,
    held_out_prompt_ids: Collection[int] | None = None,
) -> DPOResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = on_metrics or (lambda metrics: None)
    stop_requested = should_stop or (lambda: False)
    pairs = [p for p in pairs if not p.tie and p.chosen != p.rejected]
    if not pairs:
        raise ValueError("no strictly ordered pairs to train on")
    if config.loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, not {config.loss_type!r}")

    # 1. hold out whole prompts (the server's choice when it queued the run: ``held_out_prompt_ids``)
    held_out = (
        set(held_out_prompt_ids)
        if held_out_prompt_ids is not None
        else split_prompt_ids([p.prompt_id for p in pairs], config.eval_fraction, config.seed)
    )
    train_pairs = [p for p in pairs if p.prompt_id not in held_out]
    eval_pairs = [p for p in pairs if p.prompt_id in held_out]
    if not train_pairs:
        raise ValueError("every pair's prompt is held out for evaluation: nothing left to train on")
    read = (
        config.max_steps * config.batch_size * config.gradient_accumulation_steps if config.max_steps else 0
    )
    if 0 < read < len(train_pairs):  # cut short: train on (and score under the reference) only what is read
        chosen = sorted(random.Random(config.seed).sample(range(len(train_pairs)), read))
        train_pairs = [train_pairs[i] for i in chosen]

    # 2. the policy and the pairs as tokens: (prompt, chosen answer), (prompt, rejected answer)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=mixed_precision(config.mixed_precision),
    )
    set_seed(config.seed)
    policy = load_trainable_policy(
        config.policy, config.cache_dir, config, gradient_checkpointing=config.gradient_checkpointing
    )
    tokenizer, model = policy.tokenizer, policy.model
    pad_id = tokenizer.pad_token_id

    def encode(pair: PreferencePair) -> tuple[tuple[list[int], list[int]], tuple[list[int], list[int]]]:
        return (
            encode_answer(tokenizer, pair.prompt, pair.chosen, config.max_length),
            encode_answer(tokenizer, pair.prompt, pair.rejected, config.max_length),
        )

    train_data = [encode(p) for p in train_pairs]
    eval_data = [encode(p) for p in eval_pairs]
    average = config.loss_type == "ipo"

    def logps(net, data, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Chosen and rejected answers' log-probs (B,), (B,): one forward over the 2B sequences."""
        sequences = [data[i][0] for i in indices] + [data[i][1] for i in indices]
        batch = {k: v.to(accelerator.device) for k, v in pad_batch(sequences, pad_id).items()}
        summed, counts = answer_logprobs(net, batch)
        values = summed / counts.clamp(min=1) if average else summed
        return values[: len(indices)], values[len(indices) :]

    # 3. the reference's log-probs, once (before any step the policy is the reference)
    model.to(accelerator.device)
    fingerprint = _fingerprint(pairs)
    started = time.monotonic()
    reference = reference_logps(
        out_dir / REFERENCE_FILE,
        fingerprint,
        model,
        config,
        logps,
        train_data,
        eval_data,
        emit=emit,
        should_stop=stop_requested,
    )
    if reference is None:
        log.info("stopped while scoring the pairs under the reference; nothing to keep")
        return DPOResult(out_dir=out_dir, stopped=True)
    reference_seconds = time.monotonic() - started

    # 4. optimizer, schedule, resume, and the loop
    checkpoint_dir = out_dir / CHECKPOINT_DIR
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

    def figures(indices, data, ref) -> tuple[torch.Tensor, dict[str, float], list[bool]]:
        """The batch's mean loss, TRL's figures, and per pair whether the chosen answer's implicit reward
        is the higher."""
        chosen, rejected = logps(model, data, indices)
        ids = torch.tensor(indices)
        losses, r_chosen, r_rejected = dpo_loss(
            chosen,
            rejected,
            ref["chosen"][ids].to(chosen.device),
            ref["rejected"][ids].to(chosen.device),
            beta=config.beta,
            loss_type=config.loss_type,
            label_smoothing=config.label_smoothing,
        )
        return (
            losses.mean(),
            {
                "rewards/chosen": r_chosen.mean().item(),
                "rewards/rejected": r_rejected.mean().item(),
                "rewards/margins": (r_chosen - r_rejected).mean().item(),
                "rewards/accuracy": (r_chosen > r_rejected).float().mean().item(),
                "logps/chosen": chosen.detach().mean().item(),
                "logps/rejected": rejected.detach().mean().item(),
            },
            (r_chosen > r_rejected).tolist(),
        )

    def loss_of(indices: list[int]):
        loss, stats, _ = figures(indices, train_data, reference["train"])
        return loss, {"loss/train": loss.item(), **stats}, float(len(indices))

    def evaluate_held_out() -> dict[str, float]:
        """Loss, margin and preference accuracy (the implicit reward of chosen above rejected's) on the
        held-out pairs, the accuracy with its 95% interval over pairs and prompts (trainer/intervals.py)."""
        if not eval_data:
            return {}
        model.eval()
        totals: dict[str, float] = {}
        correct: list[bool] = []
        with torch.no_grad():
            for start in range(0, len(eval_data), config.batch_size):
                indices = list(range(start, min(start + config.batch_size, len(eval_data))))
                loss, stats, right = figures(indices, eval_data, reference["eval"])
                correct += right
                for key, value in {"loss": loss.item(), **stats}.items():
                    totals[key] = totals.get(key, 0.0) + value * len(indices)
        model.train()
        n = len(eval_data)
        return {
            "loss/eval": totals["loss"] / n,
            "margins/eval": totals["rewards/margins"] / n,
            **accuracy_with_interval(correct, [p.prompt_id for p in eval_pairs]),
        }

    loop = run.loop(
        accelerator,
        config,
        n_items=len(train_data),
        loss_of=loss_of,
        evaluate=evaluate_held_out,
        emit=emit,
        should_stop=stop_requested,
    )
    if loop.run():
        log.info("stopped at step %d; checkpoint saved", state.step)
        return DPOResult(out_dir=out_dir, metrics=loop.metrics, step=state.step, stopped=True)
    metrics = loop.metrics | {"time/reference_seconds": reference_seconds}
    if eval_data and "accuracy/eval" not in metrics:
        metrics |= evaluate_held_out()

    # 5. KL to the reference on the trained policy's own completions, then save
    del run, loop  # the optimizer's state goes before the KL pass loads the reference beside the policy
    prompts = _distinct_prompts(eval_pairs or train_pairs)
    if config.kl_samples:
        metrics["eval/kl"] = sampled_kl(
            accelerator.unwrap_model(model),
            policy,
            prompts,
            samples=config.kl_samples,
            max_new_tokens=config.max_new_tokens,
            lora=bool(config.lora_r),
            device=accelerator.device,
        )
        emit({"step": state.step, "eval/kl": metrics["eval/kl"]})
    metrics |= {"data/train_pairs": len(train_data), "data/eval_pairs": len(eval_data)}
    record = {
        "kind": "dpo",
        "config": asdict(config),
        "policy_dir": str(policy.model_dir),
        "step": state.step,
        "data": {"source": data_source, "fingerprint": fingerprint, "eval_prompt_ids": sorted(held_out)},
        "metrics": metrics,
    }
    save_policy(accelerator, model, tokenizer, out_dir, lora=bool(config.lora_r), record=record)
    if not config.keep_checkpoint and accelerator.is_main_process:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        (out_dir / REFERENCE_FILE).unlink(missing_ok=True)
    return DPOResult(out_dir=out_dir, metrics=metrics, step=state.step)


def _distinct_prompts(pairs: Sequence[PreferencePair]) -> list[list[dict[str, str]]]:
    seen, prompts = set(), []
    for pair in pairs:
        if pair.prompt_id not in seen:
            seen.add(pair.prompt_id)
            prompts.append(pair.prompt)
    return prompts


def _fingerprint(pairs: Sequence[PreferencePair]) -> str:
    """The data a checkpoint (and the stored reference log-probs) belong to."""
    keys = sorted(f"{p.ranking_id}:{p.chosen_id}>{p.rejected_id}" for p in pairs)
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
