"""Train a reward model on a pairs export, without a server.

    python -m trainer.reward_cli --data export.jsonl --out DIR [--backbone default] [--epochs 3] \\
        [--lr 1e-4] [--batch-rankings 8] [--max-length 256] [--eval-fraction 0.1] [--seed 0] ...

``--data`` is any ``kind=pairs`` export (JSONL, JSONL.gz or Parquet). Metrics are printed one JSON
object a line on stdout; the progress bar and log go to stderr. Re-running with the same ``--out``
resumes from ``DIR/checkpoint/`` when a previous run was interrupted.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import logging
import os
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from trainer.data import load_pairs


def _parser() -> argparse.ArgumentParser:
    from trainer.reward_config import RewardConfig

    parser = argparse.ArgumentParser(
        prog="python -m trainer.reward_cli", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="a kind=pairs export (.jsonl[.gz] or .parquet)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output directory (resumed when it has a checkpoint)"
    )
    for field in fields(RewardConfig):  # one option per config field, help from its docstring
        default = field.default if field.default is not MISSING else None
        flag = "--" + field.name.replace("_", "-")
        help_text = _field_doc(RewardConfig, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            kind = (
                float if isinstance(default, float) else int if field.name == "max_steps" else type(default)
            )
            parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")
    return parser


def _field_doc(cls: type, name: str) -> str:
    """The docstring under a dataclass field, read from the source (the house style documents fields so)."""

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and getattr(node.target, "id", None) == name
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            return " ".join(str(following.value.value).split()).replace("%", "%%")
    return ""


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from trainer.model_card import finish_trained_model
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = RewardConfig(**{f.name: getattr(args, f.name) for f in fields(RewardConfig)})
    pairs = load_pairs(args.data)
    if not pairs:
        print(f"{args.data}: no pairs", file=sys.stderr)
        return 1

    def print_metrics(metrics: dict) -> None:
        print(json.dumps(metrics), flush=True)

    result = train_reward_model(
        config,
        pairs,
        args.out,
        on_metrics=print_metrics,
        data_source={"path": str(args.data), "schema_version": _schema_version(args.data)},
    )
    if not result.stopped:  # the card and files a worker's run gets (trainer/model_card.py)
        finish_trained_model(
            result.out_dir,
            kind="reward",
            job_id=None,
            project_id=None,
            config={"base_model": args.backbone},
            roots={},
        )
    print(f"saved reward model to {result.out_dir}", file=sys.stderr)
    return 0


def _schema_version(path: Path) -> int | None:
    """The export's schema version where the file records it (Parquet metadata); None for JSONL."""
    if path.suffix != ".parquet":
        return None
    import pyarrow.parquet as pq

    version = (pq.ParquetFile(path).schema_arrow.metadata or {}).get(b"preflab.schema_version")
    return int(version) if version is not None else None


if __name__ == "__main__":
    sys.exit(main())
