"""Reward-model quality: our trainer against TRL's RewardTrainer on the shared HH-RLHF test splits.

    make bench-env
    .venv-bench/bin/python bench/reward_quality.py [--data ../shared/data/hh-rlhf] [--epochs 1] \\
        [--max-length 256] [--lr 2e-5] [--batch 8] [--eval-fraction 0.1] [--seed 0] \\
        [--train-limit N] [--eval-limit N] [--parallel] [--trainers preflab,trl] [--keep DIR]
    .venv-bench/bin/python bench/reward_quality.py --trainers preflab-rss [--rss-steps 3]   # memory only

Data: helpful-base-test + harmless-base-test (4,666 transcript pairs) split into the shared dialogue
(chat messages) and the two final assistant answers with the importer's own parser
(``app.imports.formats.parse_hh``); the degenerate lines it refuses (empty or identical answers) are
skipped and counted. One ``trainer.data.PreferencePair`` per line: a prompt id per distinct dialogue, a
ranking id per pair.

Split: ``trainer.reward_data.split_by_prompt`` over all pairs (10% of the prompt ids held out, seed 0),
made here once; both trainers get exactly its training pairs (ours with ``eval_fraction=0``) and are
scored on its held-out pairs. ``--train-limit`` / ``--eval-limit`` keep every k-th ranking (both files
stay represented) when the machine is too slow for the full epoch.

Both trainers: backbone all-MiniLM-L6-v2 (``resolve_backbone("default")``), score head seeded the same,
--epochs (1), fused AdamW at --lr (2e-5), weight decay 0, linear warm-up over 10% of the steps then
linear decay, gradient clipping 1.0, 8 pairs per optimizer step, dropout on, full precision on CPU.
Both read the SAME token ids:
each (prompt, answer) is encoded once by ``trainer.reward_data.encode`` (``role: content`` lines, the
prompt cut from the left to fit --max-length) and TRL receives them pre-tokenised (``chosen_ids`` /
``rejected_ids``), because TRL 1.x would otherwise drop, not truncate, pairs longer than ``max_length``.
What differs: TRL forwards each pair's chosen and rejected rows in one batch of 2x8 rows (ours: the two
completions of each of 8 rankings, the same 16 rows for K=2); the data order (each trainer shuffles with
its own seeded sampler); ours also runs a normalisation pass over the training completions and saves
``preflab.json`` inside the timed call.

Accuracy: each saved model scores the held-out (prompt, chosen) and (prompt, rejected) with
``trainer.reward.score`` (same encoding, same max length); accuracy = share of pairs with
r_chosen > r_rejected. Each trainer runs in its own
subprocess (--parallel: side by side); its peak RSS is that process's ``ru_maxrss``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.imports.formats import RowError, parse_hh  # noqa: E402
from trainer.data import PreferencePair  # noqa: E402
from trainer.reward_data import Ranking, group_rankings, split_by_prompt  # noqa: E402

SPLITS = ("helpful-base-test.jsonl.gz", "harmless-base-test.jsonl.gz")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf"


def load_hh_pairs(data_dir: Path, limit: int = 0) -> tuple[list[PreferencePair], int, int]:
    """The HH lines as PreferencePairs (prompt id per distinct dialogue); returns (pairs, lines, skipped).
    ``limit`` > 0 keeps every n-th pair so that about ``limit`` remain (a quick smoke run)."""
    pairs: list[PreferencePair] = []
    prompt_ids: dict[str, int] = {}
    lines = skipped = 0
    for name in SPLITS:
        with gzip.open(data_dir / name, "rt", encoding="utf-8") as file:
            for line in file:
                if not line.strip():
                    continue
                lines += 1
                try:
                    prompt, chosen, rejected = parse_hh(json.loads(line))
                except RowError:
                    skipped += 1
                    continue
                prompt_id = prompt_ids.setdefault(json.dumps(prompt), len(prompt_ids) + 1)
                n = len(pairs) + 1
                pairs.append(
                    PreferencePair(
                        prompt_id=prompt_id,
                        prompt=prompt,
                        chosen=chosen,
                        rejected=rejected,
                        chosen_id=2 * n - 1,
                        rejected_id=2 * n,
                        ranking_id=n,
                    )
                )
    if limit:
        pairs = pairs[:: max(1, len(pairs) // limit)]
    return pairs, lines, skipped


def held_out_pairs(rankings: list[Ranking]) -> list[tuple[list, str, str]]:
    """(prompt, chosen text, rejected text) of every strictly ordered pair of the rankings."""
    return [(r.prompt, r.completions[c], r.completions[j]) for r in rankings for c, j, _ in r.pairs]


def pairwise_accuracy(model_dir: Path, pairs: list[tuple[list, str, str]], max_length: int) -> float:
    from trainer.reward_model import score

    chosen = score(model_dir, [(p, c) for p, c, _ in pairs], batch_size=32, max_length=max_length)
    rejected = score(model_dir, [(p, r) for p, _, r in pairs], batch_size=32, max_length=max_length)
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# --------------------------------------------------------------------------------------------------
# One trainer per subprocess
# --------------------------------------------------------------------------------------------------


def bench_split(args: argparse.Namespace) -> tuple[list[Ranking], list[Ranking]]:
    """The split by prompt over ALL pairs; with --train-limit N, every k-th training ranking so that about N
    remain, drawn evenly from both HH files; likewise --eval-limit for the held-out rankings."""
    pairs, _, _ = load_hh_pairs(args.data, args.limit)
    split = split_by_prompt(group_rankings(pairs), args.eval_fraction, args.seed)
    train = split.train
    if args.train_limit:
        train = train[:: max(1, len(train) // args.train_limit)][: args.train_limit]
    held_out = split.eval
    if args.eval_limit:
        held_out = held_out[:: max(1, len(held_out) // args.eval_limit)][: args.eval_limit]
    return train, held_out


def as_pairs(rankings: list[Ranking]) -> list[PreferencePair]:
    """Rankings of two back into PreferencePairs (what our trainer takes)."""
    return [
        PreferencePair(
            r.prompt_id,
            r.prompt,
            r.completions[c],
            r.completions[j],
            r.completion_ids[c],
            r.completion_ids[j],
            r.ranking_id,
        )
        for r in rankings
        for c, j, _ in r.pairs
    ]


def run_ours(args: argparse.Namespace, out_dir: Path) -> dict:
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    train, held_out = bench_split(args)
    config = RewardConfig(
        backbone="default",
        epochs=args.epochs,
        lr=args.lr,
        batch_rankings=args.batch,
        max_length=args.max_length,
        eval_fraction=0.0,  # the bench made the split: train on exactly its training pairs
        seed=args.seed,
        log_every=20,
        checkpoint_every=10**9,
    )
    start = time.monotonic()
    result = train_reward_model(
        config, as_pairs(train), out_dir, on_metrics=lambda m: print(json.dumps(m), flush=True)
    )
    seconds = time.monotonic() - start
    return {
        "trainer": "preflab",
        "train_pairs": sum(len(r.pairs) for r in train),
        "eval_pairs": sum(len(r.pairs) for r in held_out),
        "steps": result.step,
        "train_seconds": seconds,
        "accuracy": pairwise_accuracy(out_dir, held_out_pairs(held_out), args.max_length),
    }


def run_ours_memory(args: argparse.Namespace, out_dir: Path) -> dict:
    """Peak RSS of our trainer on ALL the pairs (its own split, every completion encoded up front), stopped
    through ``should_stop`` after --rss-steps optimizer steps: the memory of a full run without the
    hours of CPU training (the rest of the epoch allocates nothing new; the final normalisation and
    evaluation are no-grad forwards of one batch at a time)."""
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    pairs, _, _ = load_hh_pairs(args.data, args.limit)
    config = RewardConfig(
        backbone="default",
        epochs=args.epochs,
        lr=args.lr,
        batch_rankings=args.batch,
        max_length=args.max_length,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        log_every=1,
        checkpoint_every=10**9,
    )
    steps: list[int] = []
    start = time.monotonic()
    result = train_reward_model(
        config,
        pairs,
        out_dir,
        on_metrics=lambda m: steps.append(m["step"]),
        should_stop=lambda: len(steps) >= args.rss_steps,
    )
    return {
        "trainer": "preflab-rss",
        "train_pairs": len(pairs),
        "eval_pairs": 0,
        "steps": result.step,
        "train_seconds": time.monotonic() - start,
        "accuracy": float("nan"),
    }


def run_trl(args: argparse.Namespace, out_dir: Path) -> dict:
    import math

    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    from trainer.reward import resolve_backbone
    from trainer.reward_data import encode

    train_rankings, held_out = bench_split(args)
    backbone = resolve_backbone("default")
    tokenizer = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
    # The same token ids as our trainer reads (role: content rendering, prompt cut from the left).
    train = held_out_pairs(train_rankings)
    rows = {
        "chosen_ids": [encode(tokenizer, p, c, args.max_length) for p, c, _ in train],
        "rejected_ids": [encode(tokenizer, p, r, args.max_length) for p, _, r in train],
    }
    total_steps = args.epochs * math.ceil(len(train) / args.batch)
    training_args = TRLRewardConfig(
        output_dir=str(out_dir / "trl-run"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        weight_decay=0.0,
        lr_scheduler_type="linear",
        warmup_steps=int(0.1 * total_steps),  # ours: int(warmup_ratio * total_steps)
        max_grad_norm=1.0,
        max_length=args.max_length,
        disable_dropout=False,  # ours trains with the backbone's dropout
        seed=args.seed,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=100,
        dataloader_num_workers=0,
    )
    start = time.monotonic()
    set_seed(args.seed)  # as ours: seed, then load (the score head's initialisation)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, local_files_only=True)
    trainer = RewardTrainer(
        model=model,
        args=training_args,
        train_dataset=datasets.Dataset.from_dict(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    seconds = time.monotonic() - start
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return {
        "trainer": "trl",
        "train_pairs": len(train),
        "eval_pairs": sum(len(r.pairs) for r in held_out),
        "steps": trainer.state.global_step,
        "train_seconds": seconds,
        "accuracy": pairwise_accuracy(out_dir, held_out_pairs(held_out), args.max_length),
    }


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch", type=int, default=8, help="pairs (= rankings of two) per optimizer step")
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="about this many pairs only (smoke run)")
    parser.add_argument("--train-limit", type=int, default=0, help="train on about N training pairs only")
    parser.add_argument("--eval-limit", type=int, default=0, help="score about N held-out pairs only")
    parser.add_argument(
        "--trainers", default="preflab,trl", help="comma-separated: preflab, trl, preflab-rss"
    )
    parser.add_argument("--rss-steps", type=int, default=3, help="optimizer steps of the preflab-rss run")
    parser.add_argument("--parallel", action="store_true", help="run the trainers at the same time")
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy each trained model to KEEP/<trainer> (e.g. for ppo_quality.py --reward-model)",
    )
    parser.add_argument("--child", choices=["preflab", "preflab-rss", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="reward-quality-") as tmp:
        run = {"preflab": run_ours, "preflab-rss": run_ours_memory, "trl": run_trl}[args.child]
        result = run(args, Path(tmp))
        if args.keep:
            ignore = shutil.ignore_patterns("trl-run", "checkpoint")
            shutil.copytree(tmp, args.keep / args.child, ignore=ignore, dirs_exist_ok=True)
    result["peak_rss_mb"] = peak_rss_mb()
    args.result.write_text(json.dumps(result))


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    try:
        import trl
    except ImportError:
        print("skipped: needs TRL, installed only in .venv-bench (make bench-env)")
        return
    import torch
    import transformers

    pairs, lines, skipped = load_hh_pairs(args.data, args.limit)
    split = split_by_prompt(group_rankings(pairs), args.eval_fraction, args.seed)
    print(
        f"{lines} lines, {skipped} degenerate skipped, {len(pairs)} pairs, "
        f"{len({p.prompt_id for p in pairs})} prompts; split by prompt (fraction {args.eval_fraction}, "
        f"seed {args.seed}): {sum(len(r.pairs) for r in split.train)} train pairs, "
        f"{sum(len(r.pairs) for r in split.eval)} eval pairs ({len(split.eval_prompt_ids)} prompts)"
    )
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"threads {torch.get_num_threads()}; epochs {args.epochs}, max length {args.max_length}, "
        f"lr {args.lr}, {args.batch} pairs/step",
        flush=True,
    )
    # One subprocess per trainer (its own peak RSS); --parallel runs them side by side.
    names = args.trainers.split(",")
    outputs = [Path(tempfile.mkstemp(suffix=".json")[1]) for _ in names]
    children = []
    env = dict(os.environ)
    if args.parallel:
        # Side by side, each trainer gets its share of the cores (no oversubscription).
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(names)))
    for name, out in zip(names, outputs, strict=True):
        command = [sys.executable, __file__, *sys.argv[1:], "--child", name, "--result", str(out)]
        stdout = subprocess.DEVNULL if name == "trl" else None
        children.append(subprocess.Popen(command, stdout=stdout, env=env))
        if not args.parallel:
            children[-1].wait()
    if any(proc.wait() for proc in children):
        sys.exit("a trainer failed")
    results = [json.loads(out.read_text()) for out in outputs]
    for out in outputs:
        out.unlink()
    header = ("trainer", "train pairs", "eval pairs", "accuracy", "steps", "train s", "peak RSS MB")
    print("{:<8} {:>11} {:>10} {:>9} {:>6} {:>8} {:>12}".format(*header))
    for r in results:
        print(
            f"{r['trainer']:<8} {r['train_pairs']:>11} {r['eval_pairs']:>10} {r['accuracy']:>9.4f} "
            f"{r['steps']:>6} {r['train_seconds']:>8.1f} {r['peak_rss_mb']:>12.0f}"
        )
    if len(results) == 2:
        print(f"accuracy preflab - trl = {results[0]['accuracy'] - results[1]['accuracy']:+.4f}")


if __name__ == "__main__":
    main()
