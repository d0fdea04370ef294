"""The `dpo` job: train a policy on a project's comparisons with DPO and hand back its directory.

1. Download the project's pairs through the export endpoint (with the run's filters, as a reward model's).
2. Train (trainer/dpo.py) on all but the prompts the server held out, streaming loss, implicit rewards
   and preference accuracy as job events; the policy is saved under the artifact store as `dpo/job-<id>`,
   with checkpoints (and the reference's log-probs), so a re-claimed job resumes where it stopped.
3. Return the artifact path and the final figures (held-out preference accuracy with its interval, KL to
   the reference); completing the job registers the policy version.
"""

from __future__ import annotations

from typing import Any

from trainer.client import ClaimedJob
from trainer.data import load_pairs
from trainer.dpo import DPOConfig, train_dpo
from trainer.job_control import train_reporting_epochs
from trainer.job_data import download_once


def dpo_config(ctx: Any, job: ClaimedJob) -> DPOConfig:
    """The job's config (the server's snapshot of `POST /projects/{id}/train/dpo`) as the trainer's."""
    c = job.config
    return DPOConfig(
        policy=str(ctx.model_path(c["policy_artifact"])) if c.get("policy_artifact") else "default",
        cache_dir=str(ctx.cache_dir),
        beta=float(c["beta"]),
        loss_type=str(c["loss_type"]),
        label_smoothing=float(c["label_smoothing"]),
        epochs=int(c["epochs"]),
        max_steps=int(c["max_steps"]) if c.get("max_steps") is not None else None,
        learning_rate=float(c["learning_rate"]),
        batch_size=int(c["batch_size"]),
        gradient_accumulation_steps=int(c["gradient_accumulation_steps"]),
        max_length=int(c["max_length"]),
        lora_r=int(c["lora_r"]),
        eval_fraction=float(c["eval_fraction"]),
        kl_samples=int(c["kl_samples"]),
        max_new_tokens=int(c["max_new_tokens"]),
        gradient_checkpointing=bool(c["gradient_checkpointing"]),
        seed=int(c["seed"]),
    )


def run_dpo_job(ctx: Any, job: ClaimedJob) -> tuple[dict[str, Any], str]:
    """`ctx` is the worker. Returns (metrics, artifact path relative to the artifact store)."""
    config = dpo_config(ctx, job)
    artifact = f"dpo/job-{job.id}"
    out_dir = ctx.artifact_dir / artifact
    pairs = load_pairs(download_once(ctx, job, "pairs", out_dir))
    if not pairs:
        raise ValueError(
            "No comparisons match this run's filters: rank some completions first, or relax the filters."
        )
    metrics = train_reporting_epochs(
        ctx,
        job,
        epochs=config.epochs,
        max_steps=config.max_steps,
        train=lambda report, should_stop, data_source: train_dpo(
            config,
            pairs,
            out_dir,
            on_metrics=report,
            should_stop=should_stop,
            data_source=data_source,
            held_out_prompt_ids=job.config.get("eval_prompt_ids"),
        ),
    )
    return metrics, artifact
