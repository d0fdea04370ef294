"""The `sft` job: fine-tune a policy on a project's demonstrations and hand back its directory.

1. Download the project's demonstrations through the export endpoint (with the run's filters).
2. Train (trainer/sft.py) on all but the prompts the server held out, streaming the loss as job events;
   the policy is saved under the artifact store as `sft/job-<id>`, with checkpoints, so a re-claimed job
   resumes where it stopped.
3. Return the artifact path and the final figures; completing the job registers the policy version.
"""

from __future__ import annotations

from typing import Any

from trainer.client import ClaimedJob
from trainer.data import load_demonstrations
from trainer.job_control import train_reporting_epochs
from trainer.job_data import download_once
from trainer.sft import SFTConfig, train_sft


def sft_config(ctx: Any, job: ClaimedJob) -> SFTConfig:
    """The job's config (the server's snapshot of `POST /projects/{id}/train/sft`) as the trainer's."""
    c = job.config
    return SFTConfig(
        policy=str(ctx.model_path(c["policy_artifact"])) if c.get("policy_artifact") else "default",
        cache_dir=str(ctx.cache_dir),
        epochs=int(c["epochs"]),
        max_steps=int(c["max_steps"]) if c.get("max_steps") is not None else None,
        learning_rate=float(c["learning_rate"]),
        batch_size=int(c["batch_size"]),
        gradient_accumulation_steps=int(c["gradient_accumulation_steps"]),
        max_length=int(c["max_length"]),
        lora_r=int(c["lora_r"]),
        eval_fraction=float(c["eval_fraction"]),
        gradient_checkpointing=bool(c["gradient_checkpointing"]),
        seed=int(c["seed"]),
    )


def run_sft_job(ctx: Any, job: ClaimedJob) -> tuple[dict[str, Any], str]:
    """`ctx` is the worker. Returns (metrics, artifact path relative to the artifact store)."""
    config = sft_config(ctx, job)
    artifact = f"sft/job-{job.id}"
    out_dir = ctx.artifact_dir / artifact
    demonstrations = load_demonstrations(download_once(ctx, job, "demonstrations", out_dir))
    if not demonstrations:
        raise ValueError(
            "No demonstrations match this run's filters: write some first, or relax the filters."
        )
    metrics = train_reporting_epochs(
        ctx,
        job,
        epochs=config.epochs,
        max_steps=config.max_steps,
        train=lambda report, should_stop, data_source: train_sft(
            config,
            demonstrations,
            out_dir,
            on_metrics=report,
            should_stop=should_stop,
            data_source=data_source,
            held_out_prompt_ids=job.config.get("eval_prompt_ids"),
        ),
    )
    return metrics, artifact
