"""The `reward` job: fit a reward model on a project's comparisons and hand back its directory.

1. Download the project's pairs through the export endpoint (with the run's filters): the worker
   reads data only through the API, like any researcher.
2. Train (trainer/reward.py), streaming metrics as job events; the model is saved in Hugging Face
   format under the artifact store as `reward/job-<id>`, with checkpoints, so a job re-claimed after
   its worker died resumes where it stopped.
3. Return the artifact path and the final figures; completing the job registers the model version.
"""

from __future__ import annotations

from typing import Any

from trainer.client import ClaimedJob
from trainer.data import load_pairs
from trainer.job_control import train_reporting_epochs
from trainer.job_data import download_once
from trainer.reward import train_reward_model
from trainer.reward_config import RewardConfig


def reward_config(job: ClaimedJob) -> RewardConfig:
    """The job's config as the trainer's config. The config is the server's snapshot of the whole
    request (API.md `POST /projects/{id}/train/reward`, every field with its default filled in), so it is
    read strictly: the API's schema is the one source of the defaults."""
    c = job.config
    return RewardConfig(
        backbone=str(c["base_model"]),
        epochs=int(c["epochs"]),
        lr=float(c["learning_rate"]),
        batch_rankings=int(c["batch_rankings"]),
        gradient_accumulation_steps=int(c["gradient_accumulation_steps"]),
        max_length=int(c["max_length"]),
        eval_fraction=float(c["eval_fraction"]),
        seed=int(c["seed"]),
        margin_scale=float(c["margin_scale"]),
        center_coef=float(c["center_coef"]),
        gradient_checkpointing=bool(c["gradient_checkpointing"]),
    )


def run_reward_job(ctx: Any, job: ClaimedJob) -> tuple[dict[str, Any], str]:
    """`ctx` is the worker (`api`, `artifact_dir`, `check_stop()`, `stopping`).

    Returns (metrics, artifact path relative to the artifact store)."""
    config = reward_config(job)
    artifact = f"reward/job-{job.id}"
    out_dir = ctx.artifact_dir / artifact
    data_path = download_once(ctx, job, "pairs", out_dir)
    pairs = load_pairs(data_path)
    if not pairs:
        raise ValueError(
            "No comparisons match this run's filters: rank some completions first, or relax the filters."
        )

    metrics = train_reporting_epochs(
        ctx,
        job,
        epochs=config.epochs,
        train=lambda report, should_stop, data_source: train_reward_model(
            config,
            pairs,
            out_dir,
            on_metrics=report,
            should_stop=should_stop,
            data_source=data_source,
        ),
    )
    return metrics, artifact
