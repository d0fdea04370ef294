"""A saved model directory made to load anywhere as PrefLab uses it, after training wrote it.

What transformers writes is what transformers of the same major version reads, with its defaults.
This module adds what a model directory needs to mean the same thing elsewhere:

- **reward models**: a chat template that renders exactly what PrefLab trained on (for a backbone
  without one: ``trainer.reward_data.plain_chat_template``), so TRL's ``RewardTrainer`` and a plain
  ``apply_chat_template`` read the same ids; left truncation and the run's ``max_length`` in the
  tokenizer (PrefLab cuts the prompt on the left); ``problem_type: regression`` in the config, so
  ``pipeline("text-classification")`` returns the raw score instead of a sigmoid of it;
- **policies**: the sampling settings the run used (``do_sample``, temperature, top-p) in
  ``generation_config.json``, so a plain ``generate()`` samples the policy that was trained;
- **both**: the keys transformers 4.x reads beside the ones 5.x writes (``rope_theta`` at the top of the
  config, where 4.x looks, instead of only inside ``rope_parameters``, where 4.x silently falls back to a
  default theta; a tokenizer class 4.x knows), and files readable by the group and others as the umask
  allows (safetensors writes weights 0600).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from trainer.reward_data import plain_chat_template

TOKENIZER_CLASSES_4X = {"TokenizersBackend": "PreTrainedTokenizerFast"}
"""transformers 5's tokenizer class names that 4.x does not have → the 4.x class reading the same file."""


def finish_reward_model(out_dir: Path, max_length: int) -> None:
    """The reward model's tokenizer and config, made to read inputs as PrefLab trained on them."""
    tokenizer = AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = plain_chat_template(tokenizer)
    # the attributes for this object, init_kwargs for what save_pretrained writes
    for key, value in {"truncation_side": "left", "model_max_length": max_length}.items():
        setattr(tokenizer, key, value)
        tokenizer.init_kwargs[key] = value
    tokenizer.save_pretrained(out_dir)
    _edit_json(out_dir / "config.json", lambda config: config | {"problem_type": "regression"})
    make_portable(out_dir)


def finish_policy(out_dir: Path, *, temperature: float, top_p: float) -> None:
    """The policy's generation config, set to sample as the run did."""
    _edit_json(
        out_dir / "generation_config.json",
        lambda config: config | {"do_sample": True, "temperature": temperature, "top_p": top_p},
    )
    make_portable(out_dir)


def make_portable(out_dir: Path) -> None:
    """Keys for transformers 4.x beside 5.x's, and files readable as the umask allows."""
    _edit_json(out_dir / "config.json", _with_legacy_rope)
    tokenizer_config = out_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        _edit_json(
            tokenizer_config,
            lambda config: (
                config
                | {
                    "tokenizer_class": TOKENIZER_CLASSES_4X.get(
                        config.get("tokenizer_class"), config.get("tokenizer_class")
                    )
                }
            ),
        )
    umask = os.umask(0)
    os.umask(umask)
    for path in out_dir.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _with_legacy_rope(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 writes ``rope_parameters`` only; 4.x reads ``rope_theta`` (and ``rope_scaling`` for
    anything but the default rotary embedding) and, without them, uses 10,000 whatever the model's."""
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict) or "rope_theta" not in rope:
        return config
    legacy: dict[str, Any] = {"rope_theta": rope["rope_theta"]}
    if rope.get("rope_type", "default") != "default":
        legacy["rope_scaling"] = {key: value for key, value in rope.items() if key != "rope_theta"}
    return config | legacy


def _edit_json(path: Path, change) -> None:
    if path.is_file():
        path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2, sort_keys=True) + "\n")
