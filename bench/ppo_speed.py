"""PPO step speed: our ``train_ppo`` against TRL's experimental ``PPOTrainer``, same models, same run.

    make bench-env
    .venv-bench/bin/pip install --no-deps --target .venv-bench/trl-1.12 trl==1.12.0
    PYTHONPATH=.venv-bench/trl-1.12 .venv-bench/bin/python bench/ppo_speed.py [--data DIR] \\
        [--batch 8] [--minibatch 4] [--ppo-epochs 4] [--new-tokens 48] [--temperature 0.7] [--lr 1e-5] \\
        [--warmup 1] [--steps 4] [--threads N] [--seed 0] [--order preflab,trl] [--memory]

TRL: ``PPOTrainer`` lived in ``trl.experimental.ppo`` from TRL 1.0 to 1.12 and was removed in 1.13
(huggingface/trl#7020). ``.venv-bench`` keeps TRL 1.16 for the reward benches, so TRL 1.12 is installed
beside it (``--no-deps`` into ``.venv-bench/trl-1.12``, which PYTHONPATH puts first) and runs on the same
torch, transformers and accelerate. Without a TRL that has it the script prints "skipped" and exits 0.

Models, identical for both trainers, all float32 on CPU:
- policy and reference: SmolLM2-135M-Instruct (``resolve_model_dir("default")``), two copies;
- reward model: ``AutoModelForSequenceClassification`` built from the policy itself (``num_labels=1``,
  score head drawn after ``set_seed(seed)``), saved to a temporary directory, untrained: TRL scores the
  policy's query + response token ids directly, so the reward model must read the policy's tokens; its
  scores mean nothing here, only its cost counts;
- value model: that reward model's weights (ours: ``build_value_model`` copies backbone and score head from
  it [Huang §3]; TRL: ``AutoModelForSequenceClassification.from_pretrained`` of the same directory).

Prompts: the first human turn of the HH-RLHF test dialogues, distinct, rendered with the policy's chat
template (its default system line included), the first batch x (warm-up + timed steps) of them in file
order; each trainer sees each prompt once, grouped into batches by its own seeded shuffle.

Matched: batch size (--batch prompts = completions per step, one ``generate`` call), minibatch size
(ours ``minibatch_size``; TRL ``num_mini_batches = batch / minibatch`` with
``per_device_train_batch_size = batch`` and no gradient accumulation, so both take batch / minibatch
optimizer steps per epoch), --ppo-epochs, response length (``max_new_tokens`` / ``response_length``),
sampling (temperature, top_k 0, top_p 1, stop at ``<|im_end|>``), fixed KL coefficient 0.05 (ours
``target_kl=None``; TRL has no adaptive controller), k1 KL estimator, no reward whitening, no
missing-EOS penalty, cliprange 0.2, cliprange_value 0.2, vf_coef 0.1, gamma 1, lambda 0.95, Adam(W) with
lr --lr constant, weight decay 0, eps 1e-5 (TRL: ``optim="adamw_torch"``, ``lr_scheduler_type="constant"``),
dropout off, no gradient checkpointing (TRL's PPOConfig default is on), full precision (TRL's default
bf16 off), no sample generations, no checkpoints inside the timed steps, the same torch threads.

Differences left:
- both take the rollout's policy log-probs from what ``generate`` returns: TRL from its processed scores
  (``output_scores``, the temperature applied by ``generate``), ours from the raw logits
  (``output_logits``) divided by the temperature; the same numbers with top_p 1;
- ours decodes each completion and re-encodes it with the reward model's own tokenizer and chat template
  (the same tokenizer here, so the same tokens plus the template's closing newline); TRL feeds the ids;
- neither clips the gradient norm (ours ``max_grad_norm=None``, not its default 1.0: TRL's PPO loop
  does not clip);
- TRL infers attention masks from pad ids (``ids != pad_token_id``), and SmolLM2's pad token is its EOS
  ``<|im_end|>``, which also closes every turn of the prompt; TRL's tokenizer therefore pads with
  ``<|endoftext|>`` (id 0, unused by the template) so that it does not mask real tokens. Ours passes
  explicit attention masks and keeps the model's own pad;
- TRL calls ``gc.collect()`` and ``empty_cache()`` every step, and logs through the Trainer callbacks.

Timing: seconds per PPO step, from consecutive step ends (ours: the per-step metric callback, TRL: a
``TrainerCallback.on_step_end``) over the timed steps after --warmup untimed ones; model loading,
the reward model's creation, our final checkpoint and save are not timed. Our phases come from the
``time/generation`` (sampling, with the policy's log-probs), ``time/scoring`` (reward model, reference
and value forwards, rewards, GAE) and ``time/update`` (the PPO epochs) metrics of ``train_ppo``; TRL's
from wrappers around its module functions: ``batch_generation`` (generation), from its end to the first
forward with gradients (scoring: reference and value forwards, reward model, rewards, GAE) and from
there to the step end (update).
"other" is the rest of the step. "decode steps" is the width of the sampled block (the longest
completion in the batch, EOS included); "tokens" the mean completion length up to EOS. Both run in this
one process, one after the other (--order; ours first by default); with --memory each runs in a process
of its own instead, which then reports its peak resident memory (``ru_maxrss``: model copies, optimizer
state, activations, allocator slack).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hh-rlhf"
TRL_PAD_TOKEN = "<|endoftext|>"


def first_turn_prompts(data_dir: Path, n: int) -> list[list[dict[str, str]]]:
    """The first ``n`` distinct first human turns of the HH dialogues, as one-message chats."""
    from bench.reward_quality import load_hh_pairs

    pairs, _, _ = load_hh_pairs(data_dir)
    seen: dict[str, None] = {}
    for pair in pairs:
        seen.setdefault(pair.prompt[0]["content"], None)
    return [[{"role": "user", "content": text}] for text in list(seen)[:n]]


def make_reward_model(policy_dir: Path, out_dir: Path, seed: int) -> None:
    """A one-output sequence classifier on the policy's weights and tokenizer, saved to ``out_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        policy_dir, num_labels=1, local_files_only=True, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(policy_dir, local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def summarise(steps: list[dict], args: argparse.Namespace) -> dict:
    """Means over the timed steps of the per-step records."""
    timed = steps[args.warmup : args.warmup + args.steps]
    return {key: statistics.fmean(s[key] for s in timed) for key in timed[0]}


def run_ours(args: argparse.Namespace, policy_dir: Path, rm_dir: Path, prompts: list) -> dict:
    import trainer.ppo as ppo
    import trainer.ppo_rollout as rollouts  # where the loop's sampling is looked up

    widths: list[int] = []
    original_sample = rollouts.sample

    def sample(*a, **kw):
        rollout = original_sample(*a, **kw)
        widths.append(rollout.response.shape[1])
        return rollout

    ends: list[float] = []
    per_step: list[dict] = []

    def on_metrics(metrics: dict) -> None:
        if "time/update" not in metrics:
            return
        ends.append(time.monotonic())
        per_step.append(
            {
                "generation": metrics["time/generation"],
                "scoring": metrics["time/scoring"],
                "update": metrics["time/update"],
                "tokens": metrics["response/length"],
            }
        )

    config = ppo.PPOConfig(
        reward_model=str(rm_dir),
        policy=str(policy_dir),
        steps=args.warmup + args.steps,
        batch_size=args.batch,
        minibatch_size=args.minibatch,
        ppo_epochs=args.ppo_epochs,
        max_new_tokens=args.new_tokens,
        learning_rate=args.lr,
        kl_coef=0.05,
        target_kl=None,
        seed=args.seed,
        temperature=args.temperature,
        top_p=1.0,
        missing_eos_penalty=None,
        max_grad_norm=None,
        log_every=1,
        checkpoint_every=10**9,
        sample_every=0,
    )
    rollouts.sample = sample
    try:
        with tempfile.TemporaryDirectory(prefix="ppo-speed-ours-") as out:
            ppo.train_ppo(config, prompts, out, on_metrics=on_metrics)
    finally:
        rollouts.sample = original_sample
    for i, record in enumerate(per_step):
        record["decode_steps"] = widths[i]
        record["step"] = ends[i] - ends[i - 1] if i else float("nan")
    return summarise(per_step, args)


def run_trl(args: argparse.Namespace, policy_dir: Path, rm_dir: Path, prompts: list) -> dict:
    import datasets
    import torch
    from accelerate.state import AcceleratorState
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
        TrainerCallback,
        set_seed,
    )
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    tokenizer = AutoTokenizer.from_pretrained(policy_dir, local_files_only=True)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = TRL_PAD_TOKEN  # see the docstring: TRL masks every pad id, and pad == EOS here
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in prompts]
    rows = {"input_ids": [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]}

    # Phase clocks: TRL's train() looks these module functions up at call time.
    marks: dict[str, list[float]] = {"gen_start": [], "gen_end": [], "update_start": [], "step_end": []}
    widths: list[int] = []
    lengths: list[float] = []
    original_generation, original_forward = trl_ppo.batch_generation, trl_ppo.forward

    def batch_generation(model, queries, *a, **kw):
        marks["gen_start"].append(time.monotonic())
        query_responses, logits = original_generation(model, queries, *a, **kw)
        marks["gen_end"].append(time.monotonic())
        response = query_responses[:, queries.shape[1] :]  # (B, R)
        is_eos = response == tokenizer.eos_token_id
        ends = torch.where(is_eos.any(dim=1), is_eos.float().argmax(dim=1) + 1, response.shape[1])  # (B,)
        widths.append(response.shape[1])
        lengths.append(ends.float().mean().item())
        return query_responses, logits

    def forward(model, query_responses, pad_token_id):
        if torch.is_grad_enabled() and len(marks["update_start"]) < len(marks["gen_end"]):
            marks["update_start"].append(time.monotonic())
        return original_forward(model, query_responses, pad_token_id)

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks["step_end"].append(time.monotonic())

    with tempfile.TemporaryDirectory(prefix="ppo-speed-trl-") as out:
        total = args.warmup + args.steps
        training_args = PPOConfig(
            output_dir=out,
            per_device_train_batch_size=args.batch,
            gradient_accumulation_steps=1,
            num_mini_batches=args.batch // args.minibatch,
            num_ppo_epochs=args.ppo_epochs,
            local_rollout_forward_batch_size=args.batch,
            total_episodes=args.batch * total,
            response_length=args.new_tokens,
            temperature=args.temperature,
            stop_token="eos",
            missing_eos_penalty=None,
            kl_coef=0.05,
            kl_estimator="k1",
            whiten_rewards=False,
            cliprange=0.2,
            cliprange_value=0.2,
            vf_coef=0.1,
            gamma=1.0,
            lam=0.95,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            optim="adamw_torch",
            weight_decay=0.0,
            adam_epsilon=1e-5,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            num_sample_generations=0,
            use_cpu=True,
            seed=args.seed,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_steps=1,
        )
        set_seed(args.seed)

        def causal_lm():
            return AutoModelForCausalLM.from_pretrained(
                policy_dir, local_files_only=True, dtype=torch.float32
            )

        def classifier():
            return AutoModelForSequenceClassification.from_pretrained(
                rm_dir, num_labels=1, local_files_only=True, dtype=torch.float32
            )

        dataset = datasets.Dataset.from_dict(rows)
        trainer = PPOTrainer(
            args=training_args,
            processing_class=tokenizer,
            model=causal_lm(),
            ref_model=causal_lm(),
            reward_model=classifier(),
            value_model=classifier(),
            train_dataset=dataset,
            eval_dataset=dataset.select(range(args.batch)),
            callbacks=[StepClock()],
        )
        trainer.remove_callback(PrinterCallback)
        trl_ppo.batch_generation, trl_ppo.forward = batch_generation, forward
        try:
            trainer.train()
        finally:
            trl_ppo.batch_generation, trl_ppo.forward = original_generation, original_forward
    AcceleratorState._reset_state(reset_partial_state=True)

    per_step = []
    for i in range(len(marks["step_end"])):
        per_step.append(
            {
                "generation": marks["gen_end"][i] - marks["gen_start"][i],
                "scoring": marks["update_start"][i] - marks["gen_end"][i],
                "update": marks["step_end"][i] - marks["update_start"][i],
                "step": marks["step_end"][i] - marks["step_end"][i - 1] if i else float("nan"),
                "decode_steps": widths[i],
                "tokens": lengths[i],
            }
        )
    return summarise(per_step, args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch", type=int, default=8, help="prompts (= completions) per PPO step")
    parser.add_argument("--minibatch", type=int, default=4, help="completions per optimizer step")
    parser.add_argument("--ppo-epochs", type=int, default=4)
    parser.add_argument("--new-tokens", type=int, default=48, help="max new tokens per completion")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--warmup", type=int, default=1, help="PPO steps not timed (>= 1)")
    parser.add_argument("--steps", type=int, default=4, help="PPO steps timed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--order", default="preflab,trl", help="which trainer runs first: preflab,trl or trl,preflab"
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="run each trainer in a subprocess of its own and report its peak resident memory (ru_maxrss)",
    )
    parser.add_argument("--only", choices=["preflab", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup < 1 or args.batch % args.minibatch:
        parser.error("--warmup must be >= 1 and --minibatch must divide --batch")
    if sorted(args.order.split(",")) != ["preflab", "trl"]:
        parser.error("--order must name preflab and trl once each")
    return args


def main() -> None:
    args = parse_args()
    if not args.data.is_dir():
        print(f"skipped: no HH-RLHF data in {args.data}")
        return
    try:
        import trl
        from trl.experimental.ppo import PPOTrainer  # noqa: F401
    except ImportError as exc:
        version = getattr(sys.modules.get("trl"), "__version__", None)
        reason = (
            f"TRL {version} has no trl.experimental.ppo (removed in 1.13)"
            if version
            else f"needs TRL ({exc})"
        )
        print(f"skipped: {reason}; see this script's docstring (TRL 1.12 beside .venv-bench)")
        return
    import torch
    import transformers

    from trainer.policy import resolve_model_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    policy_dir = resolve_model_dir("default", Path("~/.cache/preflab").expanduser())
    prompts = first_turn_prompts(args.data, args.batch * (args.warmup + args.steps))
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
        f"threads {torch.get_num_threads()}, load average {load:.2f}; policy {policy_dir.name}; "
        f"batch {args.batch}, minibatch {args.minibatch}, {args.ppo_epochs} PPO epochs, "
        f"{args.new_tokens} new tokens, temperature {args.temperature}; "
        f"{args.warmup} warm-up + {args.steps} timed steps",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ppo-speed-rm-") as rm_dir:
        make_reward_model(policy_dir, Path(rm_dir), args.seed)
        results = {}
        for name in [args.only] if args.only else args.order.split(","):
            if args.memory and not args.only:  # a process of its own: its peak RSS is this trainer's
                results[name] = run_in_subprocess(name)
            else:
                run = {"preflab": run_ours, "trl": run_trl}[name]
                results[name] = run(args, policy_dir, Path(rm_dir), prompts)
            print(
                f"{name} done, load average {os.getloadavg()[0]:.2f}: {json.dumps(results[name])}", flush=True
            )
    if args.only:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        args.result.write_text(json.dumps(results[args.only] | {"peak_rss_mb": peak}))
        return
    ours, theirs = results["preflab"], results["trl"]
    header = ("trainer", "s/step", "generation", "scoring", "update", "other", "decode steps", "tokens")
    print("{:<8} {:>7} {:>10} {:>8} {:>7} {:>6} {:>12} {:>6}".format(*header))
    for name, r in (("preflab", ours), ("trl", theirs)):
        other = r["step"] - r["generation"] - r["scoring"] - r["update"]
        print(
            f"{name:<8} {r['step']:>7.2f} {r['generation']:>10.2f} {r['scoring']:>8.2f} {r['update']:>7.2f} "
            f"{other:>6.2f} {r['decode_steps']:>12.1f} {r['tokens']:>6.1f}"
        )
    print(f"TRL s/step / ours s/step = {theirs['step'] / ours['step']:.2f}x (> 1: ours faster)")
    if args.memory:
        print(
            f"peak resident memory: ours {ours['peak_rss_mb']:.0f} MB, TRL {theirs['peak_rss_mb']:.0f} MB "
            f"(ours / TRL = {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x)"
        )


def run_in_subprocess(name: str) -> dict:
    """This script again with --only NAME: its result, with the peak RSS of that process alone."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, __file__, *sys.argv[1:], "--only", name, "--result", out.name], check=True
        )
        return json.loads(Path(out.name).read_text())


if __name__ == "__main__":
    main()
