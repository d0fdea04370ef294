"""Fine-tune the policy against a reward model with PPO (RLHF, Ziegler et al. 2019 / InstructGPT).

    result = train_ppo(PPOConfig(reward_model="out/rm"), prompts, Path("out/ppo"))

The loop follows "The N Implementation Details of RLHF with PPO" (Huang et al., 2024); comments tagged
``[Huang §n]`` name the detail a line implements (numbering of docs/ppo.md). Before the loop (a-d): the
models, the prompts, the optimizer, the resume. One step, top to bottom, numbered as in the code:

1. Pick ``batch_size`` prompts (a seeded permutation per pass over the prompts, so resume is exact).
2. Sample one completion per prompt from the policy (left padding, attention mask, temperature, top_p);
   the policy's log-probs and entropies of the sampled tokens come from the sampling's own logits.
3. Forward reference and value model over prompt + completion: the reference's log-probs of the sampled
   tokens, values; tokens after the first EOS are masked out.
4. Compute rewards: decode the completion, re-encode it with the REWARD MODEL's tokenizer and template,
   score it; completions without EOS score ``missing_eos_penalty`` less; per-token reward is
   ``-beta * (logp - logp_ref)`` plus the score on the last token.
5. GAE advantages and returns (gamma, lambda), advantages whitened.
6. ``ppo_epochs`` passes over shuffled minibatches: clipped policy loss + ``vf_coef`` * clipped value loss.
7. Update beta (adaptive KL controller) and emit metrics; samples, checkpoints, stop conditions, held-out
   evaluations.

After the loop (e): the held-out evaluation, the best policy within the KL budget saved as a Hugging
Face directory (safetensors, tokenizer, ``preflab.json``). The pieces live beside this file:
``ppo_config`` (settings), ``ppo_core`` (rewards, GAE, losses, KL control), ``ppo_models`` (value model,
LoRA, forward passes), ``ppo_rollout`` (sampling), ``ppo_guards`` (stop rules, best checkpoint),
``reward_model`` (the reward), ``checkpoint`` (resume).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoModelForCausalLM

from trainer.checkpoint import CHECKPOINT_DIR, load_checkpoint, save_checkpoint
from trainer.data import Chat
from trainer.optim import fused_where_supported
from trainer.policy import load_policy, resolve_model_dir
from trainer.ppo_config import RESUME_IGNORED_FIELDS, PPOConfig, PPOResult
from trainer.ppo_core import (
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    compute_gae,
    compute_rewards,
    kl_horizon_for,
    ppo_losses,
    whiten,
)
from trainer.ppo_guards import BestSnapshot, kl_budget_of, kl_ceiling_of, stop_reason
from trainer.ppo_models import add_lora, build_value_model, disable_dropout, forward_logprobs, forward_values
from trainer.ppo_rollout import (
    Models,
    StepInterrupted,
    evaluate,
    interrupt_on,
    prompt_indices,
    render_prompts,
)
from trainer.reward_mix import reward_scorer
from trainer.reward_model import PREFLAB_JSON

log = logging.getLogger("preflab.ppo")


def train_ppo(
    config: PPOConfig,
    prompts: list[Chat],
    out_dir: Path | str,
    *,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    eval_prompts: list[Chat] | None = None,
) -> PPOResult:
    """Run PPO and save the policy into ``out_dir``; resume from ``out_dir/checkpoint/`` when present.

    ``on_metrics`` receives metric dicts (see docs/ppo.md) and sample reports ``{"samples": [...]}``;
    ``should_stop`` is polled between decoding steps and between optimizer steps, so a stop takes
    seconds: True saves a checkpoint and returns ``stopped=True``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = on_metrics or (lambda metrics: None)
    interrupt = interrupt_on(should_stop or (lambda: False))
    if config.batch_size % config.minibatch_size:
        raise ValueError("minibatch_size must divide batch_size")

    # a. accelerator, seed, models: policy (trained), reference (frozen copy), value model, reward model
    accelerator = Accelerator()
    device = accelerator.device
    set_seed(config.seed)
    policy_dir = resolve_model_dir(config.policy, Path(config.cache_dir).expanduser())
    reward_dir = Path(config.reward_model).resolve()
    loaded = load_policy(policy_dir, device="cpu", dtype=torch.float32)
    tokenizer, policy = loaded.tokenizer, loaded.model
    if config.lora_r:
        policy, reference = add_lora(policy, config), None  # the reference: adapters switched off
    else:
        reference = AutoModelForCausalLM.from_pretrained(
            policy_dir, local_files_only=True, dtype=torch.float32
        )
        reference.to(device).eval().requires_grad_(False)
    scorer = reward_scorer(config, reward_dir, device, out_dir)
    value_model = build_value_model(policy_dir, reward_dir, tokenizer, scorer.tokenizer)
    for model in (policy, reference, value_model):
        if model is not None:
            disable_dropout(model)

    # b. prompts rendered with the policy's chat template; too long ones dropped
    train_set = render_prompts(tokenizer, prompts, config.max_prompt_tokens)
    eval_set = render_prompts(tokenizer, eval_prompts or [], config.max_prompt_tokens)
    if not train_set:
        raise ValueError("no prompts to train on")

    # c. one (fused) Adam over policy and value model [Huang §10: Adam eps 1e-5], prepared by accelerate
    trained = [p for p in (*policy.parameters(), *value_model.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(
        trained, lr=config.learning_rate, eps=1e-5, fused=fused_where_supported(device)
    )
    policy, value_model, optimizer = accelerator.prepare(policy, value_model, optimizer)
    models = Models(config, accelerator, policy, reference, scorer, loaded, interrupt)

    kl_ctl = (
        AdaptiveKLController(
            config.kl_coef,
            config.target_kl,
            kl_horizon_for(config),
            floor=config.kl_coef if config.min_kl_coef is None else config.min_kl_coef,
        )
        if config.target_kl is not None
        else FixedKLController(config.kl_coef)
    )

    # d. resume
    checkpoint_dir = out_dir / CHECKPOINT_DIR
    step = _resume(accelerator, checkpoint_dir, config, kl_ctl)

    metrics: dict[str, float] = {}
    try:
        # the starting policy (= the reference) on the held-out prompts
        eval_metrics: dict[str, float] = {}
        if eval_set:
            with models.as_reference() as reference_model:
                eval_metrics["eval/reward_before"] = evaluate(models, reference_model, eval_set, kl=False)[0]
            emit({"step": step, **eval_metrics})

        stop = "steps"
        ceiling = kl_ceiling_of(config.kl_ceiling, config.target_kl)
        best = BestSnapshot(kl_budget=kl_budget_of(config.target_kl, ceiling))

        while step < config.steps:
            interrupt()
            started = time.monotonic()
            set_seed(config.seed + step)  # the step's sampling and shuffles depend on (seed, step) only

            # 1. pick the step's prompts
            batch = [
                train_set[i] for i in prompt_indices(len(train_set), config.batch_size, step, config.seed)
            ]

            # 2. sample one completion per prompt and score it with the reward model
            policy.eval()
            value_model.eval()
            rollout = models.generate(policy, batch)
            generated = time.monotonic()
            raw_scores = scorer([chat for chat, _ in batch], rollout.texts)  # (B,)
            input_ids, attention_mask = rollout.input_ids, rollout.attention_mask  # (B, P + R)
            mask = rollout.response_mask.float()  # (B, R)
            length = rollout.response.shape[1]

            # 3. logprobs of the sampled tokens under the reference (the policy's came with the sample);
            #    values
            logprobs, entropy = rollout.logprobs, rollout.entropy  # (B, R)
            with torch.no_grad():
                ref_logprobs = (
                    models.reference_logprobs(input_ids, attention_mask, rollout.response) * mask
                )  # (B, R)
                values = forward_values(value_model, input_ids, attention_mask, length) * mask  # (B, R)

            # 4. compute rewards: EOS penalty, per-token KL penalty + score on the last token
            scores = apply_missing_eos_penalty(
                raw_scores, rollout.finished, config.missing_eos_penalty
            )  # (B,)
            rewards, kl = compute_rewards(scores, logprobs, ref_logprobs, mask, kl_ctl.value)  # (B, R)
            if config.whiten_rewards:
                rewards = whiten(rewards, mask, shift_mean=False)  # [Huang §11: reward scaling]

            # 5. advantages and returns; advantages whitened [Huang §12: advantage normalisation]
            advantages, returns = compute_gae(rewards, values, mask, config.gamma, config.lam)  # (B, R)
            advantages = whiten(advantages, mask)
            scored = time.monotonic()

            # 6. PPO epochs over shuffled minibatches
            policy.train()
            value_model.train()
            stats = torch.zeros(4)  # policy loss, value loss, clipfrac, minibatches
            for _ in range(config.ppo_epochs):
                order = torch.randperm(config.batch_size)
                for start in range(0, config.batch_size, config.minibatch_size):
                    rows = order[start : start + config.minibatch_size].to(device)
                    mb_ids, mb_attn, mb_mask = input_ids[rows], attention_mask[rows], mask[rows]
                    new_logprobs, _ = forward_logprobs(
                        policy, mb_ids, mb_attn, rollout.response[rows], config.temperature
                    )  # (b, R)
                    vpred = forward_values(value_model, mb_ids, mb_attn, length)  # (b, R)
                    pg_loss, vf_loss, clipfrac = ppo_losses(
                        new_logprobs,
                        logprobs[rows],
                        advantages[rows],
                        vpred,
                        values[rows],
                        returns[rows],
                        mb_mask,
                        config.cliprange,
                        config.cliprange_value,
                    )
                    loss = pg_loss + config.vf_coef * vf_loss
                    interrupt()  # before the update: a stop never leaves a half-applied optimizer step
                    accelerator.backward(loss)
                    if config.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(trained, config.max_grad_norm)
                    optimizer.step()
                    # freed at once, not at the next backward: the gradients of policy and value model
                    # (a float32 copy of both) would otherwise sit in memory through the next minibatch's
                    # forward and the next step's sampling and scoring
                    optimizer.zero_grad(set_to_none=True)
                    stats += torch.tensor([pg_loss.item(), vf_loss.item(), clipfrac.item(), 1.0])
            updated = time.monotonic()

            # 7. adaptive KL: beta toward target_kl [Ziegler et al. 2019]; metrics
            mean_kl = kl.sum(dim=1).mean().item()  # nats per completion
            beta_used = kl_ctl.value
            kl_ctl.update(mean_kl, config.batch_size)
            step += 1
            elapsed = time.monotonic() - started
            metrics = {
                "step": step,
                "reward/score": raw_scores.mean().item(),
                **getattr(scorer, "components", {}),  # a mix of rewards: each one's standardised mean
                "reward/score_penalised": scores.mean().item(),
                "reward/missing_eos": 1.0 - rollout.finished.float().mean().item(),
                "objective/kl": mean_kl,
                "objective/entropy": (entropy * mask).sum(dim=1).mean().item(),
                "objective/entropy_per_token": ((entropy * mask).sum() / mask.sum().clamp(min=1)).item(),
                "loss/policy": (stats[0] / stats[3]).item(),
                "loss/value": (stats[1] / stats[3]).item(),
                "policy/clipfrac": (stats[2] / stats[3]).item(),
                "objective/beta": beta_used,
                "response/length": mask.sum(dim=1).mean().item(),
                "time/tokens_per_second": mask.sum().item() / max(elapsed, 1e-9),
                # wall seconds of the step's phases: 2. sampling; RM + 3.-5. forwards, rewards, GAE;
                # 6. PPO epochs (on a GPU, kernels still queued at a boundary are counted in the next phase)
                "time/generation": generated - started,
                "time/scoring": scored - generated,
                "time/update": updated - scored,
            }
            if step % config.log_every == 0 or step == config.steps:
                emit(dict(metrics))
            if config.sample_every and step % config.sample_every == 0:
                emit(
                    {
                        "step": step,
                        "samples": [
                            {"prompt": chat, "completion": text, "score": s}
                            for (chat, _), text, s in zip(
                                batch, rollout.texts, raw_scores.tolist(), strict=True
                            )
                        ][: config.num_samples],
                    }
                )
            if step % config.checkpoint_every == 0 and step < config.steps:
                _save_checkpoint(accelerator, checkpoint_dir, config, step, kl_ctl.value)
            if reason := stop_reason(
                metrics,
                target_reward=config.target_reward,
                kl_ceiling=ceiling,
                min_entropy=config.min_entropy,
            ):
                stop = reason
                log.info("step %d: stopping (%s)", step, reason)
                break
            if eval_set and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                policy.eval()
                reward_now, kl_now = evaluate(models, policy, eval_set)
                best.consider(accelerator.unwrap_model(policy), step=step, reward=reward_now, kl=kl_now)
                emit({"step": step, "eval/reward": reward_now, "eval/kl": kl_now})

        # e. evaluate the trained policy; keep the best evaluation within the KL budget; save it in Hugging
        #    Face format with preflab.json
        policy.eval()
        if eval_set:
            reward_last, kl_last = evaluate(models, policy, eval_set)
            best.consider(accelerator.unwrap_model(policy), step=step, reward=reward_last, kl=kl_last)
            if best.step != step:
                log.info(
                    "saving the policy of step %d (best held-out reward within the KL budget)", best.step
                )
            eval_metrics |= {"eval/reward_last": reward_last, "eval/kl_last": kl_last} | best.summary(step)
            emit({"step": step, "eval/reward": reward_last, "eval/kl": kl_last, **eval_metrics})
    except StepInterrupted:
        # Between decoding steps or optimizer steps: the updates made so far in this step are kept, and
        # the resumed run samples this step again from them (a valid run, not a bit-identical one).
        _save_checkpoint(accelerator, checkpoint_dir, config, step, kl_ctl.value)
        log.info("stopped during step %d; checkpoint saved", step + 1)
        return PPOResult(out_dir=out_dir, step=step, metrics=metrics, stopped=True, stop_reason="should_stop")
    # a re-run with more steps continues from here (from the last step, not the best)
    _save_checkpoint(accelerator, checkpoint_dir, config, step, kl_ctl.value)
    if eval_set and best.step != step:
        best.restore_into(accelerator.unwrap_model(policy))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(policy)
        if config.lora_r:  # adapters merged in: a plain causal LM that transformers and vLLM load as is
            unwrapped = unwrapped.merge_and_unload()
        unwrapped.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        record = {
            "kind": "ppo",
            "config": asdict(config),
            "policy_dir": str(policy_dir),
            "reward_model_dir": str(reward_dir),
            "step": step,
            "stop_reason": stop,
            "beta": kl_ctl.value,
            "metrics": metrics,
            "eval": eval_metrics,
            "prompts": {"train": len(train_set), "eval": len(eval_set)},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out_dir / PREFLAB_JSON).write_text(json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return PPOResult(out_dir=out_dir, step=step, metrics=metrics | eval_metrics, stop_reason=stop)


def _save_checkpoint(
    accelerator: Accelerator, directory: Path, config: PPOConfig, step: int, beta: float
) -> None:
    """Policy, value model, optimizer and RNG (tied embeddings: plain torch files) + step, beta, config."""
    state = {"step": step, "beta": beta, "config": asdict(config)}
    save_checkpoint(accelerator, directory, state, safe_serialization=False)


def _resume(accelerator: Accelerator, directory: Path, config: PPOConfig, kl_ctl) -> int:
    """Load the checkpoint when it belongs to this run (same config); return the step to continue from."""
    saved = load_checkpoint(accelerator, directory, asdict(config), ignored=RESUME_IGNORED_FIELDS)
    if saved is None:
        return 0
    kl_ctl.value = saved["beta"]
    log.info("resumed from %s at step %d (beta %.4g)", directory, saved["step"], saved["beta"])
    return int(saved["step"])
