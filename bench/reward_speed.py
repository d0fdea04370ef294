"""Reward-model training speed: our per-ranking batching against TRL's pairwise RewardTrainer.

    make bench-env
    .venv-bench/bin/python bench/reward_speed.py [--ks 2,4,8] [--rankings-per-step 4] [--warmup 2] \\
        [--steps 10] [--prompt-tokens 64] [--completion-tokens 96] [--max-length 256]

Data: synthetic rankings of K completions, all of similar length: a prompt of --prompt-tokens random
whole-word vocabulary entries of all-MiniLM-L6-v2 and K completions of --completion-tokens each (one
token per word), ranked 0 > 1 > ... > K-1, so every ranking gives all C(K,2) strictly ordered pairs.

Ours: ``trainer.reward.train_reward_model`` (backbone "default", ``max_steps`` = warm-up + measured steps,
``batch_rankings`` = --rankings-per-step, no held-out split): each optimizer step is ONE forward over the
R*K completions of R rankings, and all R*C(K,2) pairs are gathered from it. TRL: ``trl.RewardTrainer`` on
the equivalent pairs (every pair of every ranking, pre-tokenised with the same ``encode`` so both read the
same token ids), ``per_device_train_batch_size`` = R*C(K,2): each step forwards 2*R*C(K,2) rows (each
pair's chosen and rejected side). So both do the same number of pairs per optimizer step, with the same
backbone, max length, lr schedule, clipping and dropout (TRL's ``disable_dropout=False``), full precision.

Timing: wall time of the measured steps only, after --warmup steps: ours from the per-step
``time/pairs_per_second`` metric (``log_every=1``, each window is one step: fetching and collating the batch,
forward, backward, clip, optimizer and scheduler step); TRL from a callback's clock at the end of each
step. Model loading, tokenisation, our final normalisation pass and saving are not timed. Both run in this
one process, one after the other, on the same threads. Theoretical ratio: 2*C(K,2)/K = K-1 sequences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.data import PreferencePair  # noqa: E402


def synthesise(tokenizer, n_rankings: int, k: int, prompt_tokens: int, completion_tokens: int, seed: int):
    """``n_rankings`` rankings of ``k`` completions as PreferencePairs (all C(k,2) pairs of each)."""
    rng = random.Random(seed)
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) >= 3)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    pairs = []
    for ranking in range(n_rankings):
        prompt = [{"role": "user", "content": text(prompt_tokens)}]
        completions = [text(completion_tokens) for _ in range(k)]
        ids = [ranking * k + i for i in range(k)]
        for better, worse in combinations(range(k), 2):
            pairs.append(
                PreferencePair(
                    prompt_id=ranking,
                    prompt=prompt,
                    chosen=completions[better],
                    rejected=completions[worse],
                    chosen_id=ids[better],
                    rejected_id=ids[worse],
                    ranking_id=ranking,
                    chosen_tier=better,
                    rejected_tier=worse,
                )
            )
    return pairs


def run_ours(args: argparse.Namespace, pairs: list[PreferencePair]) -> float:
    """Pairs per second of our trainer over the measured steps."""
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    per_step: list[dict] = []
    config = RewardConfig(
        backbone="default",
        max_steps=args.warmup + args.steps,
        lr=args.lr,
        batch_rankings=args.rankings_per_step,
        max_length=args.max_length,
        eval_fraction=0.0,
        seed=args.seed,
        log_every=1,
        checkpoint_every=10**9,
    )
    with tempfile.TemporaryDirectory(prefix="reward-speed-") as out:
        train_reward_model(config, pairs, out, on_metrics=per_step.append)
    measured = [m for m in per_step if "time/pairs_per_second" in m and m["step"] > args.warmup]
    pairs_done = args.steps * args.rankings_per_step * math.comb(args.k, 2)
    seconds = sum(pairs_done / args.steps / m["time/pairs_per_second"] for m in measured)
    return pairs_done / seconds


def run_trl(args: argparse.Namespace, pairs: list[PreferencePair]) -> float:
    """Pairs per second of TRL's RewardTrainer over the measured steps (same pairs, same token ids)."""
    import datasets
    from accelerate.state import AcceleratorState
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback, set_seed
    from trl import RewardConfig, RewardTrainer

    from trainer.reward import resolve_backbone
    from trainer.reward_data import encode

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(time.monotonic())

    backbone = resolve_backbone("default")
    tokenizer = AutoTokenizer.from_pretrained(backbone, local_files_only=True)
    rows = {
        "chosen_ids": [encode(tokenizer, p.prompt, p.chosen, args.max_length) for p in pairs],
        "rejected_ids": [encode(tokenizer, p.prompt, p.rejected, args.max_length) for p in pairs],
    }
    pairs_per_step = args.rankings_per_step * math.comb(args.k, 2)
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory(prefix="reward-speed-trl-") as out:
        training_args = RewardConfig(
            output_dir=out,
            max_steps=total_steps,
            per_device_train_batch_size=pairs_per_step,
            learning_rate=args.lr,
            weight_decay=0.0,
            lr_scheduler_type="linear",
            warmup_steps=int(0.1 * total_steps),
            max_grad_norm=1.0,
            max_length=args.max_length,
            disable_dropout=False,
            seed=args.seed,
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=10**6,
            disable_tqdm=True,
        )
        set_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            backbone, num_labels=1, local_files_only=True
        )
        clock = StepClock()
        trainer = RewardTrainer(
            model=model,
            args=training_args,
            train_dataset=datasets.Dataset.from_dict(rows),
            processing_class=tokenizer,
            callbacks=[clock],
        )
        trainer.train()
    AcceleratorState._reset_state(reset_partial_state=True)  # let the next run build its own Accelerator
    seconds = clock.ends[total_steps - 1] - clock.ends[args.warmup - 1]
    return args.steps * pairs_per_step / seconds


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", default="2,4,8", help="completions per ranking, comma-separated")
    parser.add_argument("--rankings-per-step", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps not timed (>= 1)")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps timed")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--completion-tokens", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        import trl
    except ImportError:
        print("skipped: needs TRL, installed only in .venv-bench (make bench-env)")
        return
    import torch
    import transformers
    from transformers import AutoTokenizer

    from trainer.reward import resolve_backbone
    from trainer.reward_data import encode

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone("default"), local_files_only=True)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"threads {torch.get_num_threads()}; {args.rankings_per_step} rankings/step, "
        f"{args.warmup} warm-up + {args.steps} timed steps, max length {args.max_length}",
        flush=True,
    )
    print(
        "{:>2} {:>10} {:>10} {:>12} {:>11} {:>6}".format(
            "K", "pairs/step", "seq tokens", "ours pairs/s", "TRL pairs/s", "ratio"
        )
    )
    results = []
    for k in (int(k) for k in args.ks.split(",")):
        args.k = k
        n_rankings = args.rankings_per_step * (args.warmup + args.steps)
        pairs = synthesise(tokenizer, n_rankings, k, args.prompt_tokens, args.completion_tokens, args.seed)
        tokens = len(encode(tokenizer, pairs[0].prompt, pairs[0].chosen, args.max_length))
        ours = run_ours(args, pairs)
        theirs = run_trl(args, pairs)
        results.append({"k": k, "ours": ours, "trl": theirs, "ratio": ours / theirs})
        pairs_per_step = args.rankings_per_step * math.comb(k, 2)
        print(
            f"{k:>2} {pairs_per_step:>10} {tokens:>10} {ours:>12.2f} {theirs:>11.2f} {ours / theirs:>5.2f}x",
            flush=True,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
