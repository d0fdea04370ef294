"""The `generate` job: fill every prompt of a project that has fewer than K completions.

Reads the pending prompts over the API, generates the missing completions in batches (several prompts
per `generate` call, K samples each), and posts them back. The server keeps at most K per prompt and
drops texts equal to one the prompt already has; such prompts stay pending and the next pass draws
again with a new seed.

An evaluation round's job names two models (`models`) and K = 2: each prompt gets one completion from
each, and every completion says which model wrote it (see docs/evaluations.md).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from trainer.client import ClaimedJob, ServerUnavailable
from trainer.generation import generate_completions
from trainer.sampling import StepCallback

PASSES = 3  # rounds over what is still pending; each round uses a fresh seed
PROGRESS_SECONDS = 2.0
"""Least time between two progress reports sent while a batch decodes (the card polls every 2 s)."""


@dataclass
class GenerateConfig:
    """What the server snapshots from the project when the job is queued."""

    k: int
    """Completions per prompt (the project's K)."""
    model: str
    """"default", a local Hugging Face model directory, or "model:<id>" (a registered policy version)."""
    model_artifact: str | None
    """For a model version: its directory relative to the artifact store (where the worker loads it)."""
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int
    """Base seed; each completion's own seed is derived from it and recorded with the completion."""
    batch_size: int = 8
    """Prompts per `generate` call (each expands to K rows)."""
    models: list[dict[str, str]] | None = None
    """An evaluation round's models, ``[{"model": spec, "model_artifact"?: path}, ...]``: one completion
    per model per prompt, each posted with its model. None for the usual one-model job."""
    retry_temperature: float | None = None
    """Temperature of the passes after the first, which re-draw the prompts still short of K distinct
    completions (a near-deterministic model gives twins); None: ``temperature`` again."""

    def temperature_of_pass(self, pass_number: int) -> float:
        return (
            self.temperature if pass_number == 0 or self.retry_temperature is None else self.retry_temperature
        )

    @classmethod
    def from_job(cls, job: ClaimedJob) -> GenerateConfig:
        generation = job.config.get("generation", {})
        return cls(
            k=int(job.config["k"]),
            model=str(job.config.get("model", "default")),
            model_artifact=job.config.get("model_artifact"),
            temperature=float(generation.get("temperature", 0.8)),
            top_p=float(generation.get("top_p", 0.95)),
            max_new_tokens=int(generation.get("max_new_tokens", 128)),
            seed=int(job.config.get("seed", job.id)),
            batch_size=int(job.config.get("batch_size", 8)),
            models=job.config.get("models"),
            retry_temperature=generation.get("retry_temperature"),
        )


def run_generate_job(ctx: Any, job: ClaimedJob) -> dict[str, Any]:
    """`ctx` is the worker: it has `api`, `load_policy(spec, artifact)` and `check_stop()`.
    Returns final metrics."""
    config = GenerateConfig.from_job(job)
    ctx.api.event(job, progress=0.0, log_text=f"loading {', '.join(_model_names(config))}")
    if config.models:
        policies = {m["model"]: ctx.load_policy(m["model"], m.get("model_artifact")) for m in config.models}
        generate = partial(_generate_batch_per_model, policies)
    else:
        generate = partial(_generate_batch, ctx.load_policy(config.model, config.model_artifact))
    progress = _Progress(ctx, job)
    total = None
    for pass_number in range(PASSES):
        pending = list(ctx.api.pending_prompts(job.project_id))
        total = total if total is not None else len(pending)
        if not pending:
            break
        for start in range(0, len(pending), config.batch_size):
            ctx.check_stop()
            batch = pending[start : start + config.batch_size]
            progress.start_batch(total=total, batch_prompts=len(batch))
            items, batch_tokens = generate(
                batch,
                replace(config, temperature=config.temperature_of_pass(pass_number)),
                seed=config.seed + 1_000_003 * pass_number,
                on_step=progress.on_step,
            )
            result = ctx.api.store_completions(job, items)
            progress.batch_stored(result, batch_tokens)
    short = _report_short_prompts(ctx, job, config)
    return {
        "generate/completions": progress.added,
        "generate/prompts": total or 0,
        "generate/prompts_short": len(short),
        "generate/seconds": round(time.monotonic() - progress.started, 2),
    }


def _report_short_prompts(ctx: Any, job: ClaimedJob, config: GenerateConfig) -> list[dict]:
    """Prompts still short of K after every pass: the model gave twins however often it was asked.

    They keep the distinct completions they got and stay pending (the project page lists them with their
    count); the job still succeeds, so one such prompt never costs the others their completions.
    """
    short = list(ctx.api.pending_prompts(job.project_id))
    if short:
        listed = ", ".join(f"#{p['id']} ({len(p['completions'])}/{config.k})" for p in short[:50])
        ctx.api.event(
            job,
            log_text=f"{len(short)} prompt(s) got fewer than K={config.k} distinct completions after "
            f"{PASSES} passes (the model repeats itself on them; a higher retry temperature may help): "
            f"{listed}",
        )
    return short


def _model_names(config: GenerateConfig) -> list[str]:
    return [m["model"] for m in config.models] if config.models else [config.model]


class _Progress:
    """A generate job's progress, reported per stored batch and, while a batch decodes, per decoding
    step (at most every PROGRESS_SECONDS): a batch of many prompts no longer sits at 0% for minutes.

    Mid-batch, a batch counts as done in proportion to its decoding steps out of ``max_new_tokens``
    (an upper bound: rows that stop early end the batch sooner), capped below 100% until it is stored.
    """

    def __init__(self, ctx: Any, job: ClaimedJob) -> None:
        self.ctx, self.job = ctx, job
        self.started = time.monotonic()
        self.last_report = self.started
        self.added = self.tokens = 0
        self.done = 0  # prompts of this job with all their completions stored
        self.total = 0
        self.batch_prompts = 0
        self.reported = 0.0  # progress only moves forward (a re-sampling round restarts its steps)

    def start_batch(self, *, total: int, batch_prompts: int) -> None:
        self.total, self.batch_prompts = total, batch_prompts

    def on_step(self, step: int, max_steps: int) -> None:
        self.ctx.check_stop()  # a worker told to stop leaves mid-batch, not after it
        now = time.monotonic()
        if now - self.last_report < PROGRESS_SECONDS or not self.total:
            return
        self.last_report = now
        within = min(step / max_steps, 0.95) * self.batch_prompts
        with contextlib.suppress(ServerUnavailable):  # a missed mid-batch report costs nothing
            self._report((self.done + within) / self.total, retries=0)

    def batch_stored(self, result: dict, batch_tokens: int) -> None:
        self.added += result["added"]
        self.tokens += batch_tokens
        self.done = max(0, self.total - result["prompts_remaining"])
        self.last_report = time.monotonic()
        self._report(self.done / self.total if self.total else 1.0, remaining=result["prompts_remaining"])

    def _report(self, progress: float, *, remaining: int | None = None, retries: int | None = None) -> None:
        self.reported = max(self.reported, min(1.0, progress))
        elapsed = max(time.monotonic() - self.started, 1e-9)
        metrics = {"generate/completions": self.added, "generate/tokens_per_second": self.tokens / elapsed}
        if remaining is not None:
            metrics["generate/prompts_remaining"] = remaining
        self.ctx.api.event(self.job, progress=self.reported, metrics=metrics, retries=retries)


def _generate_batch(
    policy: Any, prompts: list[dict], config: GenerateConfig, seed: int, on_step: StepCallback | None = None
) -> tuple[list[dict], int]:
    """Generate what each prompt lacks; prompts lacking the same number share one `generate` call."""
    by_need: dict[int, list[dict]] = defaultdict(list)
    for prompt in prompts:
        need = config.k - len(prompt["completions"])
        if need > 0:
            by_need[need].append(prompt)
    items, tokens = [], 0
    for need, group in by_need.items():
        results = _generate(policy, group, need, config, seed, on_step)
        for prompt, completions in zip(group, results, strict=True):
            tokens += sum(c.num_tokens for c in completions)
            items.append(
                {
                    "prompt_id": prompt["id"],
                    "completions": [
                        {"text": c.text, "seed": c.seed, "finished": c.finished} for c in completions
                    ],
                }
            )
    return items, tokens


def _generate(policy, group: list[dict], k: int, config: GenerateConfig, seed: int, on_step) -> list:
    """``k`` distinct completions of each prompt of ``group`` with the project's sampling settings."""
    return generate_completions(
        policy,
        [p["messages"] for p in group],
        k=k,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=seed,
        on_step=on_step,
        keep_partial=True,  # a prompt the model repeats itself on keeps its distinct completions
    )


def _generate_batch_per_model(
    policies: dict[str, Any],
    prompts: list[dict],
    config: GenerateConfig,
    seed: int,
    on_step: StepCallback | None = None,
) -> tuple[list[dict], int]:
    """One completion from each model for every prompt that lacks that model's; each names its model."""
    completions: dict[int, list[dict]] = defaultdict(list)
    tokens = 0
    for spec, policy in policies.items():
        group = [p for p in prompts if all(c.get("model") != spec for c in p["completions"])]
        if not group:
            continue
        results = _generate(policy, group, 1, config, seed, on_step)
        for prompt, row in zip(group, results, strict=True):
            if not row:  # only empty texts: nothing to store, the prompt stays pending
                continue
            (generated,) = row
            tokens += generated.num_tokens
            completions[prompt["id"]].append(
                {
                    "text": generated.text,
                    "seed": generated.seed,
                    "finished": generated.finished,
                    "model": spec,
                }
            )
    return [{"prompt_id": pid, "completions": items} for pid, items in completions.items()], tokens
