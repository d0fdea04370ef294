"""The `ppo` job: fine-tune a policy against a registered reward model and hand back its directory.

1. Read the project's prompts over the API; the server chose the held-out ones when the run was queued
   (`eval_prompt_ids` in the job's config): they are evaluated before and after, never trained on.
2. Find the reward model (and the starting policy, unless it is the bundled default) in the artifact
   store, at the paths the server put in the config.
3. Train (trainer/ppo.py), streaming metrics and sample completions as job events; the policy is saved
   in Hugging Face format under the artifact store as `ppo/job-<id>`, with checkpoints, so a job
   re-claimed after its worker died resumes where it stopped.
4. Return the artifact path and the final figures; completing the job registers the policy version.
"""

from __future__ import annotations

from typing import Any

from trainer.client import ClaimedJob
from trainer.job_control import StopPoller
from trainer.ppo import train_ppo
from trainer.ppo_config import PPOConfig


def ppo_config(ctx: Any, job: ClaimedJob) -> PPOConfig:
    """The job's config (API.md `POST /projects/{id}/train/ppo`) as the trainer's config."""
    c = job.config
    policy = str(ctx.model_path(c["policy_artifact"])) if c.get("policy_artifact") else "default"
    optional = {key: c[key] for key in ("target_kl", "missing_eos_penalty", "target_reward", "kl_ceiling")}
    if (penalty := optional["missing_eos_penalty"]) is not None and penalty < 0:
        optional["missing_eos_penalty"] = -penalty  # queued when it was the (negative) score substituted
    # absent from jobs queued before they existed: the trainer's defaults
    optional |= {key: c[key] for key in ("min_entropy", "eval_every") if key in c}
    return PPOConfig(
        reward_model=str(ctx.model_path(c["reward_model_artifact"])),
        policy=policy,
        cache_dir=str(ctx.cache_dir),
        steps=int(c["steps"]),
        batch_size=int(c["batch_size"]),
        minibatch_size=int(c["minibatch_size"]),
        ppo_epochs=int(c["ppo_epochs"]),
        max_new_tokens=int(c["max_new_tokens"]),
        learning_rate=float(c["learning_rate"]),
        kl_coef=float(c["kl_coef"]),
        temperature=float(c["temperature"]),
        top_p=float(c["top_p"]),
        seed=int(c["seed"]),
        sample_every=int(c["sample_every"]),
        checkpoint_every=int(c["checkpoint_every"]),
        lora_r=int(c.get("lora_r", 0)),
        whiten_rewards=bool(c.get("whiten_rewards", False)),
        # null or absent (jobs queued before it was settable): follows the run's length
        kl_horizon=int(c["kl_horizon"]) if c.get("kl_horizon") is not None else None,
        min_kl_coef=float(c["min_kl_coef"]) if c.get("min_kl_coef") is not None else None,
        # absent from jobs queued before models could be imported: a reward model trained here
        reward_label=int(c["reward_label"]) if c.get("reward_label") is not None else None,
        reward_input=str(c.get("reward_input", "chat")),
        # absent from jobs queued before rewards could be mixed: the one reward model
        reward_name=str(c.get("reward_name", "reward model")),
        reward_weight=float(c.get("reward_weight", 1.0)),
        extra_rewards=[
            {
                "directory": str(ctx.model_path(e["artifact"])),
                "weight": float(e["weight"]),
                "name": str(e["name"]),
                "label": e["label"],
                "reads": str(e["reads"]),
            }
            for e in c.get("extra_reward_entries", [])
        ],
        **optional,
    )


TRUNCATED_WARNING = 0.9
"""Share of a step's completions cut at max_new_tokens above which the run page says so."""


def truncation_notice(metrics: dict[str, Any], config: PPOConfig) -> str | None:
    """A line for the run page when the reward model is scoring mostly cut-off answers: what it learnt
    from whole answers may not hold for their first max_new_tokens tokens."""
    cut = metrics.get("reward/missing_eos", 0.0)
    if cut < TRUNCATED_WARNING:
        return None
    return (
        f"{cut:.0%} of the first step's completions reached max_new_tokens ({config.max_new_tokens}) "
        "without ending: the reward model scores them cut off. If the project's labelers judge longer "
        "answers, raise max_new_tokens."
    )


def run_ppo_job(ctx: Any, job: ClaimedJob) -> tuple[dict[str, Any], str]:
    """`ctx` is the worker (`api`, `artifact_dir`, `cache_dir`, `model_path()`, `check_stop()`, `stopping`).
    Returns (metrics, artifact path relative to the artifact store)."""
    config = ppo_config(ctx, job)
    artifact = f"ppo/job-{job.id}"
    held_out = set(job.config.get("eval_prompt_ids", []))
    train_prompts, eval_prompts = [], []
    for prompt in ctx.api.prompts(job.project_id):
        if prompt["status"] == "imported":  # preference data brought in, not prompts to generate for
            continue
        (eval_prompts if prompt["id"] in held_out else train_prompts).append(prompt["messages"])
    if not train_prompts:
        raise ValueError("This project has no prompts to train on: upload prompts first.")
    ctx.api.event(
        job,
        progress=0.01,
        log_text=f"{len(train_prompts)} training prompts, {len(eval_prompts)} held out for evaluation",
    )
    should_stop = StopPoller(ctx, job)

    def report(metrics: dict[str, Any]) -> None:
        if "samples" in metrics:  # a few completions to read in the browser, beside the curves
            ctx.api.event(job, metrics=metrics)
            return
        step = float(metrics.get("step", 0))
        ctx.api.event(
            job,
            progress=min(0.99, 0.02 + 0.97 * step / config.steps),
            metrics=metrics,
            log_text=truncation_notice(metrics, config) if step == 1 else None,
        )

    result = train_ppo(
        config,
        train_prompts,
        ctx.artifact_dir / artifact,
        on_metrics=report,
        should_stop=should_stop,
        eval_prompts=eval_prompts,
    )
    if result.stopped:
        should_stop.raise_stop()
    return {**result.metrics, "stop_reason": result.stop_reason}, artifact
