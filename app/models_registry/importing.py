"""Models brought from outside: a Hugging Face directory an admin allowed, registered as a version.

The server never loads weights (it may have no torch): it reads the directory's config.json to check
that it is the kind of model asked for (a causal LM as a policy, a sequence classifier as a reward) and
that a tokenizer comes with it, and resolves a classifier's reward label to an index. The worker loads
the weights from the same path, so it must see the directory there (the same machine or mount).
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput
from app.models_registry.models import ModelKind, ModelOrigin, ModelVersion
from app.models_registry.schemas import ModelImport
from app.models_registry.service import local_model_dir

CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")
CLASSIFIER_SUFFIX = "ForSequenceClassification"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model")


def import_model(session: Session, *, request: ModelImport, model_dirs: Sequence[Path]) -> ModelVersion:
    directory = local_model_dir(request.path, model_dirs=model_dirs, field="path")
    config = _config(directory)
    architectures = [str(a) for a in config.get("architectures") or []]
    if request.kind == ModelKind.policy:
        _require_architecture(architectures, CAUSAL_LM_SUFFIXES, "a causal language model (…ForCausalLM)")
        if request.reward_label is not None:
            raise InvalidInput(
                "reward_label is for reward models; a policy has none.", details={"field": "reward_label"}
            )
        label = None
    else:
        _require_architecture(
            architectures, (CLASSIFIER_SUFFIX,), "a sequence classifier (…ForSequenceClassification)"
        )
        label = _reward_label(config, request.reward_label)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise InvalidInput(
            f"'{request.path}' has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save the tokenizer "
            "beside the weights (tokenizer.save_pretrained).",
            code="unknown_model",
            details={"field": "path"},
        )
    if session.scalar(select(ModelVersion.id).where(ModelVersion.artifact == str(directory))):
        raise Conflict(
            f"'{directory}' is registered already; use that version (GET /models).",
            code="model_already_imported",
            details={"field": "path"},
        )
    version = ModelVersion(
        kind=request.kind.value,
        name=request.name or directory.name,
        origin=ModelOrigin.imported.value,
        artifact=str(directory),
        base_model=str(directory),
        reward_label=label,
        metrics={},
    )
    session.add(version)
    session.flush()
    return version


def _config(directory: Path) -> dict[str, Any]:
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"config.json in '{directory}' cannot be read as JSON ({exc}).",
            code="unknown_model",
            details={"field": "path"},
        ) from None
    if not isinstance(config, dict):
        raise InvalidInput(
            "config.json is not a JSON object.", code="unknown_model", details={"field": "path"}
        )
    return config


def _require_architecture(architectures: list[str], suffixes: tuple[str, ...], wanted: str) -> None:
    if not any(name.endswith(suffixes) for name in architectures):
        found = ", ".join(architectures) or "none named in config.json"
        raise InvalidInput(
            f"This kind needs {wanted}; the directory holds {found}.",
            code="wrong_model_kind",
            details={"field": "kind", "architectures": architectures},
        )


def _reward_label(config: dict[str, Any], asked: int | str | None) -> int | None:
    """The label's index; None for a one-output classifier (whose logit is the reward)."""
    labels = {int(index): str(name) for index, name in (config.get("id2label") or {}).items()}
    count = int(config.get("num_labels") or len(labels) or 2)  # transformers' default is 2 labels
    if count == 1:
        if asked is not None:
            raise InvalidInput(
                "This classifier has one output, its logit is the reward: leave reward_label null.",
                details={"field": "reward_label"},
            )
        return None
    named = ", ".join(f"{i} ({labels.get(i, '?')})" for i in range(count))
    if asked is None:
        raise InvalidInput(
            f"This classifier has {count} outputs: name the one that is the reward in reward_label "
            f"({named}).",
            details={"field": "reward_label"},
        )
    if isinstance(asked, int) and 0 <= asked < count:
        return asked
    by_name = {name.lower(): index for index, name in labels.items()}
    if isinstance(asked, str) and asked.lower() in by_name:
        return by_name[asked.lower()]
    raise InvalidInput(
        f"reward_label {asked!r} is not a label of this classifier: {named}.",
        details={"field": "reward_label"},
    )
