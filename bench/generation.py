"""Benchmark: K completions per prompt, batched in one ``generate`` call vs one call per completion.

Run from the repository root:

    .venv/bin/python bench/generation.py

Both methods draw the same completions (each completion has its own derived seed), so they generate the
same tokens and the comparison is like for like. Tokens are real generated tokens, up to and including
EOS; padding after a finished row is not counted. The first run converts the default GGUF model into the
cache (tens of seconds); that and a warm-up call are outside the timings.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, before transformers is imported

import torch

from trainer.generation import Generated, generate_completions, generate_completions_naive
from trainer.policy import load_policy, resolve_model_dir

PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for sleeping better.",
    "How do I reverse a list in Python?",
    "Why is the sky blue? Explain it to a ten-year-old.",
    "Write a haiku about autumn leaves.",
    "What is the difference between a virus and a bacterium?",
    "Suggest a name for a bakery that sells only croissants.",
    "Summarise the plot of Romeo and Juliet in two sentences.",
]


@dataclass
class Timing:
    method: str
    seconds: float
    new_tokens: int
    results: list[list[Generated]]

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)

    # 1. resolve (convert once) and load the model
    started = time.perf_counter()
    model_dir = resolve_model_dir(args.model, args.cache_dir)
    resolved_s = time.perf_counter() - started
    started = time.perf_counter()
    policy = load_policy(model_dir, device=args.device)
    loaded_s = time.perf_counter() - started

    chats = [[{"role": "user", "content": text}] for text in PROMPTS[: args.prompts]]
    settings = dict(
        k=args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )

    # 2. warm up (first-call allocations), then time both methods on the same prompts and seeds
    generate_completions(policy, chats[:1], **{**settings, "k": 2, "max_new_tokens": 4})
    batched = timed("batched", lambda: generate_completions(policy, chats, **settings))
    naive = timed("naive loop", lambda: generate_completions_naive(policy, chats, **settings))

    # 3. report
    print(f"model: {model_dir} (resolve {resolved_s:.1f} s, load {loaded_s:.1f} s)")
    print(
        f"device: {policy.device}, dtype: {policy.model.dtype}, torch threads: {torch.get_num_threads()}, "
        f"load average: {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{len(chats)} prompts x K={args.k}, max_new_tokens={args.max_new_tokens}, "
        f"temperature={args.temperature}, top_p={args.top_p}, seed={args.seed}"
    )
    print_table([batched, naive], baseline=naive)
    same = sum(
        a.text == b.text
        for row_a, row_b in zip(batched.results, naive.results, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )
    print(f"identical completions between the two methods: {same}/{len(chats) * args.k}")


def timed(method: str, run: Callable[[], list[list[Generated]]]) -> Timing:
    started = time.perf_counter()
    results = run()
    seconds = time.perf_counter() - started
    return Timing(method, seconds, sum(g.num_tokens for row in results for g in row), results)


def print_table(rows: list[Timing], baseline: Timing) -> None:
    print(f"| {'method':<10} | {'seconds':>7} | {'new tokens':>10} | {'tokens/s':>8} | {'speedup':>7} |")
    print(f"|{'-' * 12}|{'-' * 8}:|{'-' * 11}:|{'-' * 9}:|{'-' * 8}:|")
    for row in rows:
        speedup = row.tokens_per_second / baseline.tokens_per_second
        print(
            f"| {row.method:<10} | {row.seconds:>7.1f} | {row.new_tokens:>10} | "
            f"{row.tokens_per_second:>8.1f} | {speedup:>6.2f}x |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default", help="'default' or a local model directory")
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/preflab").expanduser())
    parser.add_argument("--device", default=None)
    parser.add_argument("--prompts", type=int, default=len(PROMPTS))
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=1234)
    return parser.parse_args()


if __name__ == "__main__":
    main()
