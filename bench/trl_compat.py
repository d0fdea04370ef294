"""PrefLab's files in the ecosystem's tools: TRL trains on an export and on PrefLab's reward model.

    make bench-env && .venv-bench/bin/python bench/trl_compat.py [--data ../shared/data/hh-rlhf]

Not a timing: a check, in `.venv-bench` (TRL beside PrefLab's trainer stack; never in `.venv`), that

1. a `pairs` export (HH-RLHF's helpful-base test split imported into a fresh SQLite project, plus rankings
   with ties), written as JSONL and as Parquet, loads with 🤗 `datasets` (JSONL with the features in
   docs/export-features.json) and the two concatenate;
2. TRL's `DPOTrainer` trains the bundled policy for a step on it (ties and "none acceptable" filtered out
   as docs/exports.md says);
3. PrefLab trains a reward model for two steps and finishes its directory as the worker does; TRL's
   `RewardTrainer` then trains that directory for a step on the same export, and tokenizes each row to
   exactly the ids PrefLab scores (its chat template renders PrefLab's input).

Prints what it checked; exits non-zero at the first failure.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import make_engine, make_session_factory  # noqa: E402
from app.exports import service as exports  # noqa: E402
from app.exports.parquet import iter_parquet  # noqa: E402
from app.exports.schemas import ExportFilters  # noqa: E402
from app.imports import service as imports  # noqa: E402
from app.imports.formats import ImportFormat  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from app.projects import service as project_service  # noqa: E402
from app.projects.models import Project  # noqa: E402
from app.projects.schemas import ProjectCreate  # noqa: E402

TIED = [  # rankings with a tie, so that the export has tie rows (last in the file)
    {
        "prompt": f"Name a colour ({i}).",
        "completions": ["Red.", "Blue.", "Maybe.", "No."],
        "ranking": [[0, 1], [2], [3]],
    }
    for i in range(20)
]


def export_files(data: Path, out: Path) -> tuple[Path, Path]:
    engine = make_engine(f"sqlite:///{out / 'preflab.sqlite3'}")
    upgrade_to_head(engine)
    sessions = make_session_factory(engine)
    with sessions() as session:
        project = project_service.create_project(
            session, data=ProjectCreate(name="hh", completions_per_prompt=4), author=None
        )
        tied = io.BytesIO("".join(json.dumps(row) + "\n" for row in TIED).encode())
        for fmt, name, upload in (
            (ImportFormat.hh, "helpful-base-test.jsonl.gz", (data / "helpful-base-test.jsonl.gz").open("rb")),
            (ImportFormat.rankings, "ties.jsonl", tied),
        ):
            with upload:
                imports.import_preferences(
                    session,
                    project=project,
                    upload=upload,
                    fmt=fmt,
                    source=imports.import_source(fmt, name),
                    skip_invalid=True,
                )
        session.commit()
        project_id = project.id
    paths = []
    for fmt in ("jsonl", "parquet"):
        filters = ExportFilters(kind="pairs", format=fmt, include_ties=True)
        with sessions() as session:
            plan = exports.plan_export(session, project=session.get(Project, project_id), filters=filters)
        path = out / f"pairs.{fmt}"
        with engine.connect() as connection, path.open("wb") as sink:
            chunks = (
                exports.iter_jsonl(connection, plan)
                if fmt == "jsonl"
                else iter_parquet(exports.iter_rows(connection, plan), filters)
            )
            for chunk in chunks:
                sink.write(chunk)
        paths.append(path)
    engine.dispose()
    print(f"exported the pairs with ties: {paths[0].name}, {paths[1].name}")
    return paths[0], paths[1]


def load_and_concatenate(jsonl: Path, parquet: Path):
    import datasets

    declared = json.loads((ROOT / "docs" / "export-features.json").read_text())["pairs"]
    features = datasets.Features.from_dict(declared)
    from_jsonl = datasets.load_dataset("json", data_files=str(jsonl), split="train", features=features)
    from_parquet = datasets.load_dataset("parquet", data_files=str(parquet), split="train")
    both = datasets.concatenate_datasets([from_jsonl, from_parquet])
    assert from_jsonl.features == from_parquet.features, "one schema in both formats"
    ties = sum(from_jsonl["tie"])
    print(f"datasets: {from_jsonl.num_rows} rows in each format ({ties} ties), concatenated: {both.num_rows}")
    return from_parquet.filter(lambda row: not row["tie"] and not row["none_acceptable"])


def trl_dpo_step(pairs, work: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from trainer.policy import ensure_default_model

    policy = ensure_default_model(work / "cache")
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(policy),
        args=_args(DPOConfig, work / "dpo", max_length=256),
        train_dataset=pairs.select(range(4)),
        processing_class=AutoTokenizer.from_pretrained(policy),
    )
    trainer.train()
    print(f"TRL DPOTrainer: 1 step on the export, loss {trainer.state.log_history[-1]['train_loss']:.4f}")


def preflab_reward_model(jsonl: Path, work: Path) -> Path:
    from trainer.data import load_pairs
    from trainer.model_card import finish_trained_model
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    out = work / "artifacts" / "reward" / "job-1"
    pairs = load_pairs(jsonl)[:64]
    train_reward_model(
        RewardConfig(backbone="default", max_steps=2, batch_rankings=4, max_length=256), pairs, out
    )
    finish_trained_model(
        out, kind="reward", job_id=1, project_id=1, config={"base_model": "default"}, roots={"artifact": work}
    )
    print(f"PrefLab reward model: 2 steps, finished as the worker does ({out.name}, README.md written)")
    return out


def trl_reward_step(pairs, model_dir: Path, work: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from trainer.reward_data import encode

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sample = pairs.select(range(8))
    for row in sample:
        trl_ids = tokenizer.apply_chat_template(
            row["prompt"] + row["chosen"], tokenize=True, return_dict=True
        )
        ours = encode(tokenizer, row["prompt"], row["chosen"][0]["content"], 10**6)
        assert trl_ids["input_ids"] == ours, "TRL tokenizes the row as PrefLab scores it"
    trainer = RewardTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1),
        args=_args(RewardConfig, work / "rm", max_length=256),
        train_dataset=sample,
        processing_class=tokenizer,
    )
    trainer.train()
    loss = trainer.state.log_history[-1]["train_loss"]
    print(f"TRL RewardTrainer on PrefLab's reward model: same token ids on 8 rows; 1 step, loss {loss:.4f}")


def _fresh_accelerate() -> None:
    """Each trainer sets up accelerate its own way (TRL: ``use_cpu``); one process runs three of them."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def _args(config_class, out: Path, **extra):
    return config_class(
        output_dir=str(out),
        per_device_train_batch_size=2,
        max_steps=1,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        **extra,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "hh-rlhf")
    args = parser.parse_args()
    if not (args.data / "helpful-base-test.jsonl.gz").is_file():
        sys.exit(f"Missing HH-RLHF split in {args.data}")
    with tempfile.TemporaryDirectory(prefix="preflab-trl-") as tmp:
        work = Path(tmp)
        jsonl, parquet = export_files(args.data, work)
        pairs = load_and_concatenate(jsonl, parquet)
        trl_dpo_step(pairs, work)
        _fresh_accelerate()
        reward_dir = preflab_reward_model(jsonl, work)
        _fresh_accelerate()
        trl_reward_step(pairs, reward_dir, work)
    print("all checks passed")


if __name__ == "__main__":
    main()
