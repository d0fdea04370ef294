"""PPO on CPU for a fixed budget: reward before and after, KL after, minutes, and the curve as a PNG.

    .venv/bin/python bench/ppo_quality.py [--data ../shared/data/hh-rlhf] [--reward-model DIR] \\
        [--rm-train-limit 400] [--rm-max-length 128] [--rm-eval-limit 200] [--steps 12] [--batch 8] \\
        [--minibatch 4] [--ppo-epochs 2] [--new-tokens 32] [--lr 1e-5] [--missing-eos-penalty none] \\
        [--eval-prompts 32] [--seed 0] [--out DIR] [--png docs/img/ppo-curve.png]
    .venv-bench/bin/python bench/ppo_quality.py --plot-only docs/img/ppo-curve.json   # redraw the PNG

Data: helpful-base-test + harmless-base-test (``load_hh_pairs`` of bench/reward_quality.py, the importer's
parser), split by dialogue with ``trainer.reward_data.split_by_prompt`` (10% held out, --seed).

Reward model (skipped with --reward-model DIR, which reuses a saved one): ``train_reward_model`` with the
default backbone (all-MiniLM-L6-v2), one epoch over every k-th training ranking so that --rm-train-limit
pairs remain, max length --rm-max-length, 8 pairs per step, lr 2e-5, then its pairwise accuracy on
--rm-eval-limit held-out pairs. A budget of minutes on two cores, not a good reward model: see
docs/benchmarks.md for what such a model is worth.

PPO: ``train_ppo`` with the default policy (SmolLM2-135M-Instruct) and ``PPOConfig``'s defaults except
the budget (--steps, --batch, --minibatch, --ppo-epochs, --new-tokens, --lr, --seed) and the missing-EOS
penalty: adaptive KL (beta 0.05, target 6 nats), temperature 0.7. The penalty (``PPOConfig`` default -1:
a completion that does not end within --new-tokens scores -1 instead of its RM score) is off by default
here: SmolLM2's answers to HH questions almost never end within a CPU-sized budget (32 of 32 cut at 32
tokens in a trial run), so every completion would score -1 and the reward model would have no say;
--missing-eos-penalty -1 puts it back. The reward model reads each completion with its own
tokenizer; the value model starts from the policy (the RM has another vocabulary). Prompts: the first
human turn of each HH dialogue, one chat message each; training prompts from the training dialogues,
--eval-prompts held-out ones (first turns of held-out dialogues that no training dialogue starts with)
for ``eval_prompts``: ``eval/reward_before`` is the mean raw RM score of the starting policy's
completions, ``eval/reward_after`` that of the trained policy, ``eval/kl_after`` its mean KL to the
reference per completion (nats), all sampled with the same seed.

Printed: one row per PPO step (raw and penalised score, KL, beta, completion length, share without
EOS, seconds by phase), then the summary. Minutes are wall-clock minutes of ``train_ppo`` (model loading,
both evaluations, the steps and the final save). The curve (``reward/score``, ``reward/score_penalised``
and ``objective/kl`` per step, plus the eval figures) goes to --png, and as JSON beside it; without
matplotlib only the JSON is written (``--plot-only`` redraws the PNG from it with a Python that has
matplotlib, e.g. .venv-bench).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf"
DEFAULT_PNG = ROOT / "docs" / "img" / "ppo-curve.png"
CURVE_KEYS = ("reward/score", "reward/score_penalised", "objective/kl")


def hh_split(args: argparse.Namespace):
    """The HH rankings split by dialogue: (training rankings, held-out rankings)."""
    from bench.reward_quality import load_hh_pairs
    from trainer.reward_data import group_rankings, split_by_prompt

    pairs, lines, skipped = load_hh_pairs(args.data)
    split = split_by_prompt(group_rankings(pairs), 0.1, args.seed)
    print(
        f"HH-RLHF: {lines} lines, {skipped} degenerate skipped, {len(pairs)} pairs; split by dialogue: "
        f"{len(split.train)} training, {len(split.eval)} held-out rankings",
        flush=True,
    )
    return split.train, split.eval


def first_turns(rankings) -> list[str]:
    """Distinct first human turns of the rankings' dialogues, in order."""
    return list(dict.fromkeys(r.prompt[0]["content"] for r in rankings))


def train_reward(args: argparse.Namespace, train, held_out, out_dir: Path) -> None:
    from bench.reward_quality import as_pairs, held_out_pairs, pairwise_accuracy
    from trainer.reward import train_reward_model
    from trainer.reward_config import RewardConfig

    subset = train[:: max(1, len(train) // args.rm_train_limit)][: args.rm_train_limit]
    config = RewardConfig(
        backbone="default",
        epochs=1,
        lr=2e-5,
        batch_rankings=8,
        max_length=args.rm_max_length,
        eval_fraction=0.0,
        seed=args.seed,
        log_every=10,
        checkpoint_every=10**9,
    )
    start = time.monotonic()
    result = train_reward_model(config, as_pairs(subset), out_dir)
    minutes = (time.monotonic() - start) / 60
    scored = held_out_pairs(held_out[:: max(1, len(held_out) // args.rm_eval_limit)][: args.rm_eval_limit])
    accuracy = pairwise_accuracy(out_dir, scored, args.rm_max_length)
    print(
        f"reward model: all-MiniLM-L6-v2, {len(subset)} training pairs, max length {args.rm_max_length}, "
        f"{result.step} steps, {minutes:.1f} min; held-out accuracy {accuracy:.3f} on {len(scored)} pairs",
        flush=True,
    )


def plot(curve: dict, png: Path) -> bool:
    """Draw the curve into ``png``; False when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in curve["steps"]]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, [row["reward/score"] for row in curve["steps"]], marker="o", label="RM score (raw)")
    penalised = [row["reward/score_penalised"] for row in curve["steps"]]
    if penalised != [row["reward/score"] for row in curve["steps"]]:  # the penalty was on and hit
        top.plot(steps, penalised, marker=".", linestyle="--", label="score after missing-EOS penalty")
    evals = curve["eval"]
    if "eval/reward_before" in evals:
        top.axhline(evals["eval/reward_before"], color="grey", linestyle=":", label="eval: before")
    if "eval/reward_after" in evals:
        top.axhline(evals["eval/reward_after"], color="black", linestyle=":", label="eval: after")
    top.set_ylabel("reward (batch mean)")
    top.legend(fontsize="small")
    top.set_title(curve["title"], fontsize="medium")
    bottom.plot(
        steps,
        [row["objective/kl"] for row in curve["steps"]],
        marker="o",
        color="tab:red",
        label="training batch",
    )
    if "eval/kl_after" in evals:
        bottom.plot(
            [steps[-1]],
            [evals["eval/kl_after"]],
            marker="*",
            markersize=12,
            color="black",
            label="eval: after",
        )
    bottom.set_ylabel("KL to reference (nats per completion)")
    bottom.set_xlabel("PPO step")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    bottom.legend(fontsize="small")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return True


def write_curve(curve: dict, png: Path) -> None:
    data = png.with_suffix(".json")
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps(curve, indent=1) + "\n")
    if plot(curve, png):
        print(f"curve: {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png} (data: {data.name})")
    else:
        print(f"curve data: {data}; no PNG: matplotlib is not installed here (--plot-only {data} elsewhere)")


def run_ppo(args: argparse.Namespace, train, held_out, rm_dir: Path, out_dir: Path) -> dict:
    from trainer.ppo import PPOConfig, train_ppo

    held_out_texts = first_turns(held_out)
    train_texts = first_turns(train)
    eval_texts = [t for t in held_out_texts if t not in set(train_texts)][: args.eval_prompts]
    chat = lambda text: [{"role": "user", "content": text}]  # noqa: E731
    config = PPOConfig(
        reward_model=str(rm_dir),
        policy="default",
        steps=args.steps,
        batch_size=args.batch,
        minibatch_size=args.minibatch,
        ppo_epochs=args.ppo_epochs,
        max_new_tokens=args.new_tokens,
        learning_rate=args.lr,
        missing_eos_penalty=args.missing_eos_penalty,
        seed=args.seed,
        checkpoint_every=10**9,
        sample_every=0,
        eval_batch_size=16,
    )
    print(
        f"PPO: {len(train_texts)} training prompts, {len(eval_texts)} eval prompts; {args.steps} steps x "
        f"{args.batch} completions, minibatch {args.minibatch}, {args.ppo_epochs} epochs, "
        f"{args.new_tokens} new tokens, lr {args.lr}, missing-EOS penalty {args.missing_eos_penalty}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    header = ("step", "score", "penalised", "KL", "beta", "length", "no EOS", "gen s", "score s", "update s")
    print("{:>4} {:>7} {:>9} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>8}".format(*header), flush=True)
    steps: list[dict] = []

    def on_metrics(m: dict) -> None:
        if "loss/policy" not in m:
            return
        steps.append({k: v for k, v in m.items() if k == "step" or "/" in k})
        print(
            f"{m['step']:>4} {m['reward/score']:>7.3f} {m['reward/score_penalised']:>9.3f} "
            f"{m['objective/kl']:>6.2f} {m['objective/beta']:>7.4f} {m['response/length']:>6.1f} "
            f"{m['reward/missing_eos']:>6.2f} {m.get('time/generation', float('nan')):>6.1f} "
            f"{m.get('time/scoring', float('nan')):>7.1f} {m.get('time/update', float('nan')):>8.1f}",
            flush=True,
        )

    start = time.monotonic()
    result = train_ppo(
        config,
        [chat(t) for t in train_texts],
        out_dir,
        on_metrics=on_metrics,
        eval_prompts=[chat(t) for t in eval_texts],
    )
    minutes = (time.monotonic() - start) / 60
    evals = {k: v for k, v in result.metrics.items() if k.startswith("eval/")}
    return {"steps": steps, "eval": evals, "minutes": minutes, "eval_prompts": len(eval_texts)}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--reward-model", type=Path, help="reuse this saved reward model (no RM training)")
    parser.add_argument("--rm-train-limit", type=int, default=400, help="reward-model training pairs")
    parser.add_argument("--rm-max-length", type=int, default=128)
    parser.add_argument("--rm-eval-limit", type=int, default=200, help="held-out pairs for its accuracy")
    parser.add_argument("--steps", type=int, default=12, help="PPO steps")
    parser.add_argument("--batch", type=int, default=8, help="prompts (= completions) per PPO step")
    parser.add_argument("--minibatch", type=int, default=4)
    parser.add_argument("--ppo-epochs", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument(
        "--missing-eos-penalty",
        type=lambda v: None if v.lower() == "none" else float(v),
        default=None,
        help="score of completions without EOS ('none': scored by the RM like the others)",
    )
    parser.add_argument("--eval-prompts", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the reward model and policy here (default: temporary)")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG)
    parser.add_argument("--plot-only", type=Path, metavar="JSON", help="redraw the PNG from a saved curve")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.plot_only:
        curve = json.loads(args.plot_only.read_text())
        if not plot(curve, args.plot_only.with_suffix(".png")):
            sys.exit("matplotlib is not installed in this Python")
        print(f"wrote {args.plot_only.with_suffix('.png')}")
        return
    if not args.data.is_dir():
        print(f"skipped: no HH-RLHF data in {args.data}")
        return
    import torch
    import transformers

    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    train, held_out = hh_split(args)
    with tempfile.TemporaryDirectory(prefix="ppo-quality-") as tmp:
        out = args.out or Path(tmp)
        rm_dir = args.reward_model
        if rm_dir is None:
            rm_dir = out / "rm"
            train_reward(args, train, held_out, rm_dir)
        run = run_ppo(args, train, held_out, rm_dir, out / "ppo")
    last = run["steps"][-1]
    before, after = run["eval"]["eval/reward_before"], run["eval"]["eval/reward_after"]
    print(
        f"eval/reward_before {before:.4f}  eval/reward_after {after:.4f}  "
        f"(change {after - before:+.4f}, {run['eval_prompts']} prompts)"
    )
    print(
        f"eval/kl_after {run['eval']['eval/kl_after']:.3f} nats; last step: KL {last['objective/kl']:.3f}, "
        f"beta {last['objective/beta']:.4f}; {len(run['steps'])} steps in {run['minutes']:.1f} min "
        f"({run['minutes'] * 60 / len(run['steps']):.0f} s/step with both evaluations); "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    title = (
        f"PPO on CPU: SmolLM2-135M-Instruct against a MiniLM reward model (HH-RLHF)\n"
        f"{args.steps} steps x {args.batch} completions, {args.ppo_epochs} PPO epochs, "
        f"{args.new_tokens} new tokens, lr {args.lr}"
    )
    write_curve({"title": title, "args": {k: str(v) for k, v in vars(args).items()}, **run}, args.png)


if __name__ == "__main__":
    main()
