"""DPO's reference: the log-probs of every pair's answers under the starting policy, computed once before
the first step and kept beside the checkpoint (trainer/dpo.py says why)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

REFERENCE_FILE = "reference_logps.pt"
REFERENCE_REPORT_EVERY = 10
"""Batches between progress reports of the reference pass."""


def reference_logps(
    path: Path, fingerprint: str, model, config, logps, train_data, eval_data, *, emit, should_stop
) -> dict | None:
    """{"train"|"eval": {"chosen": (N,), "rejected": (N,)}} under the reference, from disk when a previous
    attempt on the same data computed them; None when stopped meanwhile (a pass over every pair takes as
    long as a third of an epoch, so it reports its progress and can be stopped like the training loop)."""
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved.get("fingerprint") == fingerprint and saved.get("loss_type") == config.loss_type:
            return saved["logps"]
    model.eval()
    result = {}
    total, done = len(train_data) + len(eval_data), 0
    with torch.no_grad(), adapters_off(model, config):
        for name, data in (("train", train_data), ("eval", eval_data)):
            chosen, rejected = [], []
            for start in range(0, len(data), config.batch_size):
                if should_stop():
                    return None
                if done % (REFERENCE_REPORT_EVERY * config.batch_size) == 0:
                    emit({"step": 0, "epoch": 0.0, "reference/pairs_scored": done, "reference/pairs": total})
                done += min(config.batch_size, len(data) - start)
                c, r = logps(model, data, list(range(start, min(start + config.batch_size, len(data)))))
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
            empty = torch.zeros(0)
            result[name] = {
                "chosen": torch.cat(chosen) if chosen else empty,
                "rejected": torch.cat(rejected) if rejected else empty,
            }
    model.train()
    torch.save({"fingerprint": fingerprint, "loss_type": config.loss_type, "logps": result}, path)
    return result


def adapters_off(model, config):
    """With LoRA the reference is the policy with its adapters off; without, the untrained policy itself."""
    return model.disable_adapter() if config.lora_r else contextlib.nullcontext()
