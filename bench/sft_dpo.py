"""SFT and DPO against TRL's SFTTrainer and DPOTrainer: seconds per step, peak memory, and DPO's held-out
preference accuracy, on the same model, data and settings.

    make bench-env
    .venv-bench/bin/python bench/sft_dpo.py speed [--batch 4] [--max-length 192] \\
        [--warmup 1] [--steps 3] [--trainers sft-preflab,sft-trl,dpo-preflab,dpo-trl]
    .venv-bench/bin/python bench/sft_dpo.py accuracy [--train 128] [--eval 64] [--epochs 1] [--lr 1e-6]

Model: the bundled SmolLM2-135M-Instruct (its converted directory in the cache), float32, on the CPU.
Data: the shared HH-RLHF test splits (``../shared/data/hh-rlhf``) read as PrefLab imports them, split by
prompt (seeded), and only pairs whose prompt + chosen and prompt + rejected both fit in --max-length
tokens of the policy's chat template: neither trainer truncates, so both see the same tokens. SFT trains
on each pair's prompt and chosen answer (a demonstration); DPO on the pairs.

Settings, the same for both: batch (pairs or demonstrations per optimizer step), lr, linear schedule
without warm-up, AdamW without weight decay, clipping at 1.0, dropout off, full precision, no gradient
checkpointing (TRL's SFTConfig turns it on by default: off here, and --checkpointing turns it on for
both), loss on the answers' tokens only (TRL: prompt-completion data, ``completion_only_loss``), DPO's
sigmoid loss with beta 0.1 against the starting policy.

The one difference kept on purpose is how each gets the reference's log-probs for DPO: TRL's default
keeps a second copy of the model and runs it every step; ours scores every pair once before the first
step and keeps only the numbers. So the DPO figures are: seconds per step (both), our one-off reference
pass, and the whole run's training seconds (ours: reference pass + steps; TRL: steps), and peak memory.

Each trainer runs in its own subprocess (its own peak RSS: ``ru_maxrss``), one after the other, on the
same threads. Timed: from the end of one optimizer step to the end of the next, after --warmup steps;
loading, tokenising and saving are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
sys.path.insert(0, str(ROOT / "bench"))

from reward_quality import DEFAULT_DATA, load_hh_pairs  # noqa: E402

from trainer.data import Demonstration, PreferencePair  # noqa: E402

TRAINERS = ("sft-preflab", "sft-trl", "dpo-preflab", "dpo-trl")


# --------------------------------------------------------------------------------------------------
# Data: the same pairs for every trainer
# --------------------------------------------------------------------------------------------------


def policy_dir() -> Path:
    from trainer.policy import resolve_model_dir

    return resolve_model_dir("default", Path(os.environ.get("PREFLAB_DATA_DIR", "data")) / "cache")


def fitting_pairs(args: argparse.Namespace, tokenizer) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held out): pairs split by prompt, both answers fitting in max_length with their prompt,
    thinned evenly to --train / --eval (or --pairs for the speed runs)."""
    from trainer.finetune import encode_answer, split_prompt_ids

    pairs, _, _ = load_hh_pairs(args.data)

    def fits(pair: PreferencePair) -> bool:
        # encode with room to spare: a longer one would be truncated, and the trainers truncate differently
        for answer in (pair.chosen, pair.rejected):
            prompt, tokens = encode_answer(tokenizer, pair.prompt, answer, 10 * args.max_length)
            if len(prompt) + len(tokens) > args.max_length:
                return False
        return True

    pairs = [p for p in pairs if fits(p)]
    held_out = split_prompt_ids([p.prompt_id for p in pairs], 0.2, args.seed)
    train = [p for p in pairs if p.prompt_id not in held_out]
    evaluation = [p for p in pairs if p.prompt_id in held_out]
    if args.mode == "speed":  # exactly the pairs the timed run reads, and no held-out pass to time
        wanted_train, wanted_eval = args.pairs or (args.warmup + args.steps) * args.batch, 0
    else:
        wanted_train, wanted_eval = args.train, args.eval
    train = train[:: max(1, len(train) // wanted_train)][:wanted_train]
    evaluation = evaluation[:: max(1, len(evaluation) // max(wanted_eval, 1))][:wanted_eval]
    return train, evaluation


# --------------------------------------------------------------------------------------------------
# One trainer per subprocess
# --------------------------------------------------------------------------------------------------


def step_seconds(ends: list[float], warmup: int) -> float:
    """The mean time between optimizer-step ends after the warm-up steps."""
    timed = ends[warmup:]
    gaps = [b - a for a, b in zip(([ends[warmup - 1]] if warmup else []) + timed[:-1], timed, strict=False)]
    return sum(gaps) / len(gaps) if gaps else float("nan")


def total_steps(args: argparse.Namespace, n_items: int) -> int:
    if args.mode == "speed":
        return args.warmup + args.steps
    return args.epochs * -(-n_items // args.batch)


def run_preflab(args: argparse.Namespace, kind: str, out: Path) -> dict:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir(), local_files_only=True)
    train, held_out = fitting_pairs(args, tokenizer)
    ends: list[float] = []
    loop_start: list[float] = []

    def on_metrics(metrics: dict) -> None:
        if "loss/train" in metrics:
            ends.append(time.monotonic())

    def should_stop() -> bool:  # polled before every batch: the first call is the loop's start
        if not loop_start:
            loop_start.append(time.monotonic())
        return False

    common = dict(
        policy=str(policy_dir()),
        learning_rate=args.lr,
        batch_size=args.batch,
        max_length=args.max_length,
        warmup_ratio=0.0,
        mixed_precision="no",
        max_steps=total_steps(args, len(train)),
        epochs=args.epochs,
        eval_fraction=0.0,
        seed=args.seed,
        gradient_checkpointing=args.checkpointing,
        checkpoint_every=10**6,
    )
    if kind == "sft":
        from trainer.sft import SFTConfig, train_sft

        demonstrations = [Demonstration(p.prompt_id, p.prompt, p.chosen, i) for i, p in enumerate(train)]
        result = train_sft(
            SFTConfig(**common),
            demonstrations,
            out,
            on_metrics=on_metrics,
            should_stop=should_stop,
            held_out_prompt_ids=[],
        )
        extra = {"reference_seconds": 0.0}
    else:
        from trainer.dpo import DPOConfig, train_dpo

        pairs = train + held_out
        result = train_dpo(
            DPOConfig(**common, beta=args.beta, kl_samples=0),
            pairs,
            out,
            on_metrics=on_metrics,
            should_stop=should_stop,
            held_out_prompt_ids={p.prompt_id for p in held_out},
        )
        extra = {
            "reference_seconds": result.metrics["time/reference_seconds"],
            "accuracy": result.metrics.get("accuracy/eval"),
            "accuracy_low": result.metrics.get("accuracy/eval_low"),
            "accuracy_high": result.metrics.get("accuracy/eval_high"),
        }
    return {
        "steps": result.step,
        "s_per_step": step_seconds(ends, args.warmup if args.mode == "speed" else 1),
        # the steps, and for DPO the reference pass before them; loading and tokenising are not counted
        "train_seconds": ends[-1] - loop_start[0] + extra["reference_seconds"],
        "items": len(train),
        **extra,
    }


def run_trl(args: argparse.Namespace, kind: str, out: Path) -> dict:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed

    from trainer.ppo_models import disable_dropout

    tokenizer = AutoTokenizer.from_pretrained(policy_dir(), local_files_only=True)
    train, held_out = fitting_pairs(args, tokenizer)
    set_seed(args.seed)
    model = AutoModelForCausalLM.from_pretrained(policy_dir(), local_files_only=True, dtype=torch.float32)
    disable_dropout(model)
    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_args, **_kwargs):
            ends.append(time.monotonic())

    common = dict(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        max_steps=total_steps(args, len(train)),
        max_length=args.max_length,
        gradient_checkpointing=args.checkpointing,
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=10**6,
        dataloader_num_workers=0,
        seed=args.seed,
    )

    def assistant(text: str) -> list[dict]:
        return [{"role": "assistant", "content": text}]

    extra: dict = {}
    if kind == "sft":
        from trl import SFTConfig, SFTTrainer

        rows = {"prompt": [p.prompt for p in train], "completion": [assistant(p.chosen) for p in train]}
        trainer = SFTTrainer(
            model=model,
            args=SFTConfig(**common, completion_only_loss=True, packing=False),
            train_dataset=datasets.Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
    else:
        from trl import DPOConfig, DPOTrainer

        def rows(pairs: list[PreferencePair]) -> datasets.Dataset:
            return datasets.Dataset.from_dict(
                {
                    "prompt": [p.prompt for p in pairs],
                    "chosen": [assistant(p.chosen) for p in pairs],
                    "rejected": [assistant(p.rejected) for p in pairs],
                }
            )

        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(**common, beta=args.beta, per_device_eval_batch_size=args.batch),
            train_dataset=rows(train),
            eval_dataset=rows(held_out) if held_out else None,
            processing_class=tokenizer,
            callbacks=[Clock()],
        )
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    if kind == "dpo" and held_out:
        figures = trainer.evaluate()
        extra["accuracy"] = figures.get("eval_rewards/accuracies")
    return {
        "steps": trainer.state.global_step,
        "s_per_step": step_seconds(ends, args.warmup if args.mode == "speed" else 1),
        "train_seconds": seconds,
        "items": len(train),
        **extra,
    }


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    kind, trainer = args.child.split("-")
    with tempfile.TemporaryDirectory(prefix="sft-dpo-bench-") as tmp:
        run = run_preflab if trainer == "preflab" else run_trl
        result = run(args, kind, Path(tmp))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.result.write_text(json.dumps(result))


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["speed", "accuracy"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="speed: training pairs (default: (warm-up + timed steps) x batch)",
    )
    parser.add_argument("--train", type=int, default=128, help="accuracy: training pairs")
    parser.add_argument("--eval", type=int, default=64, help="held-out pairs (DPO's preference accuracy)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in both")
    parser.add_argument("--trainers", default=None, help=f"comma-separated, of {','.join(TRAINERS)}")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    if not args.data.is_dir():
        print(f"skipped: the shared HH-RLHF data is not at {args.data}")
        return
    try:
        import trl
    except ImportError:
        print("skipped: needs TRL, installed only in .venv-bench (make bench-env)")
        return
    import torch
    import transformers

    default = "dpo-preflab,dpo-trl" if args.mode == "accuracy" else ",".join(TRAINERS)
    names = (args.trainers or default).split(",")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"threads {args.threads}, load average {os.getloadavg()[0]:.2f}; {args.mode}: batch {args.batch}, "
        f"max length {args.max_length}, lr {args.lr}, beta {args.beta}, "
        + (
            f"{args.warmup} warm-up + {args.steps} timed steps"
            if args.mode == "speed"
            else f"{args.epochs} epoch(s) on {args.train} pairs, {args.eval} held out"
        )
        + (", gradient checkpointing" if args.checkpointing else ""),
        flush=True,
    )
    results = {}
    for name in names:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, *sys.argv[1:], "--child", name, "--result", out.name]
            subprocess.run(command, check=True)
            results[name] = json.loads(Path(out.name).read_text())
        print(f"{name:12} " + json.dumps(results[name]), flush=True)
    print(f"{'trainer':12} {'s/step':>8} {'train s':>8} {'ref s':>7} {'peak MB':>8} {'accuracy':>9}")
    for name, r in results.items():
        accuracy = f"{r['accuracy']:.3f}" if r.get("accuracy") is not None else "-"
        reference = f"{r['reference_seconds']:.1f}" if r.get("reference_seconds") else "-"
        print(
            f"{name:12} {r['s_per_step']:8.2f} {r['train_seconds']:8.1f} {reference:>7} "
            f"{r['peak_rss_mb']:8.0f} {accuracy:>9}"
        )
    for kind in ("sft", "dpo"):
        ours, theirs = results.get(f"{kind}-preflab"), results.get(f"{kind}-trl")
        if ours and theirs:
            print(
                f"{kind}: TRL s/step / ours = {theirs['s_per_step'] / ours['s_per_step']:.2f}x, "
                f"TRL train s / ours = {theirs['train_seconds'] / ours['train_seconds']:.2f}x "
                "(> 1: ours faster); "
                f"peak memory ours / TRL = {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x"
            )


if __name__ == "__main__":
    main()
