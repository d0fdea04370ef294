"""The reward model: data prep, the loss, per-ranking batching, training, resume, save/load, decoders.

Tiny models built in code (tests/trainer/conftest.py); the one test with the real MiniLM is marked slow.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import torch.nn.functional as F  # noqa: E402

from trainer.data import PreferencePair  # noqa: E402
from trainer.reward import train_reward_model  # noqa: E402
from trainer.reward_batches import bradley_terry_loss, collate, encode_rankings  # noqa: E402
from trainer.reward_config import RewardConfig  # noqa: E402
from trainer.reward_data import encode, group_rankings, split_by_prompt, truncate  # noqa: E402
from trainer.reward_model import load_reward_model, rewards_of, score  # noqa: E402

FILLER = ["the", "sea", "is", "blue", "and", "a", "cat", "sat", "on", "the", "mat"]


def make_pairs(n_prompts: int = 24, k: int = 3, seed: int = 0, rankings_per_prompt: int = 1) -> list:
    """An easy preference: the completion at tier t says "good" (k - 1 - t) times, the worst says "bad".

    Each prompt has k completions (ids unique per prompt) ranked by ``rankings_per_prompt`` labelers,
    each ranking expanded into its C(k, 2) pairs, as the server's export writes them.
    """
    rng = random.Random(seed)
    pairs = []
    ranking_id = 0
    for prompt_id in range(n_prompts):
        prompt = [{"role": "user", "content": f"tell me about {rng.choice(FILLER)} {rng.choice(FILLER)}"}]
        texts = []
        for tier in range(k):
            words = [rng.choice(FILLER) for _ in range(4)] + ["good"] * (k - 1 - tier)
            words += ["bad"] if tier == k - 1 else []
            rng.shuffle(words)
            texts.append(" ".join(words))
        for _ in range(rankings_per_prompt):
            ranking_id += 1
            for better in range(k):
                for worse in range(better + 1, k):
                    pairs.append(
                        PreferencePair(
                            prompt_id=prompt_id,
                            prompt=prompt,
                            chosen=texts[better],
                            rejected=texts[worse],
                            chosen_id=prompt_id * 100 + better,
                            rejected_id=prompt_id * 100 + worse,
                            ranking_id=ranking_id,
                            chosen_tier=better,
                            rejected_tier=worse,
                        )
                    )
    return pairs


def tiny_config(backbone: Path, **overrides) -> RewardConfig:
    values = dict(
        backbone=str(backbone),
        lr=3e-3,
        warmup_ratio=0.0,
        batch_rankings=4,
        max_length=48,
        eval_fraction=0.25,
        seed=0,
        log_every=1,
        checkpoint_every=1000,
    )
    return RewardConfig(**(values | overrides))


# --------------------------------------------------------------------------------------------------
# Data: truncation, grouping, split
# --------------------------------------------------------------------------------------------------


def test_truncate_keeps_prompt_end_and_whole_completion():
    prompt, completion = list(range(10)), [100, 101, 102]
    assert truncate(prompt, completion, 20) == prompt + completion
    assert truncate(prompt, completion, 7) == [6, 7, 8, 9, 100, 101, 102]
    assert truncate(prompt, completion, 3) == completion  # the completion just fits: no prompt
    assert truncate(prompt, [1, 2, 3, 4, 5], 3) == [1, 2, 3]  # too long alone: its start, no prompt


def test_encode_wraps_special_tokens_and_cuts_the_prompt_on_the_left(tiny_bert_dir):
    tokenizer, _ = load_reward_model(tiny_bert_dir)
    chat = [{"role": "user", "content": "what is the capital of france"}]
    tokens = tokenizer.convert_ids_to_tokens(encode(tokenizer, chat, "paris is good", 8))
    assert tokens == ["[CLS]", "france", "assistant", ":", "paris", "is", "good", "[SEP]"]


def test_group_rankings_rebuilds_rankings_from_pairs():
    pairs = make_pairs(n_prompts=2, k=4, rankings_per_prompt=2)
    rankings = group_rankings(list(reversed(pairs)))
    assert [r.ranking_id for r in rankings] == [1, 2, 3, 4]
    assert all(len(r.completions) == 4 and len(r.pairs) == 6 for r in rankings)
    r = rankings[0]
    for c, j, gap in r.pairs:  # every pair points at the right texts, with its tier gap
        original = next(p for p in pairs if p.ranking_id == 1 and p.chosen_id == r.completion_ids[c])
        assert original.chosen == r.completions[c]
        assert gap == (r.completion_ids[j] % 100) - (r.completion_ids[c] % 100) > 0


def test_split_is_by_prompt_and_seeded():
    rankings = group_rankings(make_pairs(n_prompts=20, rankings_per_prompt=2))
    split = split_by_prompt(rankings, 0.25, seed=1)
    train_prompts = {r.prompt_id for r in split.train}
    eval_prompts = {r.prompt_id for r in split.eval}
    assert not train_prompts & eval_prompts
    assert eval_prompts == set(split.eval_prompt_ids) and len(eval_prompts) == 5
    assert len(split.train) + len(split.eval) == len(rankings)
    assert split_by_prompt(list(reversed(rankings)), 0.25, seed=1).eval_prompt_ids == split.eval_prompt_ids
    assert split_by_prompt(rankings, 0.25, seed=2).eval_prompt_ids != split.eval_prompt_ids


# --------------------------------------------------------------------------------------------------
# The loss and the per-ranking batching
# --------------------------------------------------------------------------------------------------


def test_bradley_terry_loss_options_follow_the_formula():
    r_c, r_r = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    gap = torch.tensor([1.0, 2.0])
    plain = (-math.log(1 / (1 + math.exp(-1.0))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    assert bradley_terry_loss(r_c, r_r).item() == pytest.approx(plain)
    # margin: -logsigmoid(r_c - r_r - 0.5 * gap) → differences 1 - 0.5 = 0.5 and -0.5 - 1 = -1.5
    margin = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(1.5)))) / 2
    assert bradley_terry_loss(r_c, r_r, tier_gap=gap, margin_scale=0.5).item() == pytest.approx(margin)
    # centering: + 0.1 * mean(r)^2 over the batch's rewards
    rewards = torch.tensor([1.0, 0.0, 0.5, 1.0])
    centred = bradley_terry_loss(r_c, r_r, rewards=rewards, center_coef=0.1).item()
    assert centred == pytest.approx(plain + 0.1 * 0.625**2)
    # weights: a weighted mean
    weighted = bradley_terry_loss(r_c, r_r, weights=torch.tensor([3.0, 1.0])).item()
    first, second = F.softplus(torch.tensor(-1.0)).item(), F.softplus(torch.tensor(0.5)).item()
    assert weighted == pytest.approx((3 * first + second) / 4)


def test_one_forward_per_ranking_matches_the_naive_pairwise_loss(tiny_bert_dir):
    """K=3 and K=4 rankings in one batch (one forward over 7 completions) give the same loss and
    gradients as encoding each pair's two sides separately (2 x 9 forwards)."""
    pairs = make_pairs(n_prompts=1, k=3, seed=1) + [
        p.__class__(**{**p.__dict__, "prompt_id": 7, "ranking_id": 2}) for p in make_pairs(1, k=4, seed=2)
    ]
    tokenizer, model = load_reward_model(tiny_bert_dir)
    rankings = group_rankings(pairs)
    assert [len(r.completions) for r in rankings] == [3, 4]
    encoded = encode_rankings(tokenizer, rankings, max_length=48)

    batch = collate(encoded, tokenizer.pad_token_id, ranking_weighted=False)
    assert batch["input_ids"].shape[0] == 7 and batch["chosen"].shape == (9,)
    rewards = rewards_of(model, batch["input_ids"], batch["attention_mask"])  # (7,)
    batched = bradley_terry_loss(rewards[batch["chosen"]], rewards[batch["rejected"]])
    batched_grads = torch.autograd.grad(batched, list(model.parameters()))

    naive_losses = []
    for pair in pairs:
        sides = [encode(tokenizer, pair.prompt, text, 48) for text in (pair.chosen, pair.rejected)]
        r = [
            rewards_of(model, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)) for ids in sides
        ]
        naive_losses.append(-F.logsigmoid(r[0] - r[1]))
    naive = torch.cat(naive_losses).mean()
    naive_grads = torch.autograd.grad(naive, list(model.parameters()))

    assert batched.item() == pytest.approx(naive.item(), rel=1e-5)
    for a, b in zip(batched_grads, naive_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Training, save and load
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_bert(tiny_bert_dir, tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    pairs = make_pairs(n_prompts=24, k=3)
    initial = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1)
    metrics: list[dict] = []
    out_dir = tmp_path_factory.mktemp("rm-bert")
    result = train_reward_model(
        tiny_config(tiny_bert_dir, epochs=6), pairs, out_dir, on_metrics=metrics.append
    )
    return pairs, initial, metrics, result


def test_training_lowers_the_loss_and_moves_the_parameters(trained_bert):
    from transformers import AutoModelForSequenceClassification

    _, initial, metrics, result = trained_bert
    train = [m for m in metrics if "loss/train" in m]
    assert [m["step"] for m in train] == list(range(1, 31))  # 18 train prompts / 4 per batch * 6 epochs
    assert {"loss/train", "accuracy/train", "train/lr", "time/pairs_per_second", "step", "epoch"} <= set(
        train[0]
    )
    first, last = sum(m["loss/train"] for m in train[:5]) / 5, sum(m["loss/train"] for m in train[-5:]) / 5
    assert last < first - 0.2
    evals = [m for m in metrics if "loss/eval" in m]
    assert len(evals) == 6 and {"accuracy/eval", "reward/mean", "reward/std"} <= set(evals[0])
    assert result.metrics["accuracy/eval"] >= 0.8
    trained = AutoModelForSequenceClassification.from_pretrained(result.out_dir)
    moved = [
        not torch.equal(a, b)
        for (name, a), b in zip(initial.named_parameters(), trained.parameters(), strict=True)
        if name.startswith("bert.encoder")
    ]
    assert all(moved)


def test_saved_model_loads_with_plain_transformers_centred(trained_bert):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pairs, _, _, result = trained_bert
    out_dir = result.out_dir
    record = json.loads((out_dir / "preflab.json").read_text())
    assert record["normalisation"]["applied_to"] == "classifier.bias"
    assert record["data"]["rankings_train"] == 18 and record["split"]["eval_prompt_count"] == 6
    assert not (out_dir / "checkpoint").exists() and (out_dir / "model.safetensors").is_file()

    model = AutoModelForSequenceClassification.from_pretrained(out_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    completions = {(p.prompt_id, p.chosen_id): p for p in pairs} | {
        (p.prompt_id, p.rejected_id): p.__class__(**{**p.__dict__, "chosen": p.rejected}) for p in pairs
    }
    items = [(p.prompt, p.chosen, pid) for (pid, _), p in sorted(completions.items())]
    with torch.no_grad():
        plain = [
            model(input_ids=torch.tensor([encode(tokenizer, prompt, text, 48)])).logits.item()
            for prompt, text, _ in items
        ]
    ours = score(out_dir, [(prompt, text) for prompt, text, _ in items], batch_size=5)
    assert ours == pytest.approx(plain, abs=1e-4)

    eval_ids = set(record["split"]["eval_prompt_ids"])
    train_scores = [s for s, (_, _, pid) in zip(ours, items, strict=True) if pid not in eval_ids]
    eval_scores = [s for s, (_, _, pid) in zip(ours, items, strict=True) if pid in eval_ids]
    assert abs(sum(train_scores) / len(train_scores)) < 1e-4  # centred on the training completions
    assert sum(eval_scores) / len(eval_scores) == pytest.approx(result.metrics["reward/mean"], abs=1e-4)


def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(tiny_bert_dir, tmp_path):
    pairs = make_pairs(n_prompts=16, k=3)
    config = tiny_config(tiny_bert_dir, max_steps=6, checkpoint_every=2)

    reference = train_reward_model(config, pairs, tmp_path / "reference")

    seen: list[dict] = []
    crashed = train_reward_model(
        config,
        pairs,
        tmp_path / "run",
        on_metrics=seen.append,
        should_stop=lambda: bool(seen) and seen[-1].get("step", 0) >= 3,
    )
    assert crashed.stopped and crashed.step == 3
    assert (tmp_path / "run" / "checkpoint" / "trainer_state.json").is_file()
    assert not (tmp_path / "run" / "preflab.json").exists()

    resumed_metrics: list[dict] = []
    resumed = train_reward_model(config, pairs, tmp_path / "run", on_metrics=resumed_metrics.append)
    assert not resumed.stopped and resumed.step == 6
    assert [m["step"] for m in resumed_metrics if "loss/train" in m] == [4, 5, 6]
    assert resumed.metrics["loss/train"] == pytest.approx(reference.metrics["loss/train"], rel=1e-4)
    assert resumed.metrics["loss/eval"] == pytest.approx(reference.metrics["loss/eval"], rel=1e-4)


def test_a_decoder_backbone_trains_and_scores_centred(make_tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    backbone = make_tiny_model_dir(with_pad=False)  # pad token borrowed from EOS
    pairs = make_pairs(n_prompts=12, k=3)
    metrics: list[dict] = []
    result = train_reward_model(
        tiny_config(backbone, max_steps=6, lr=1e-3), pairs, tmp_path / "rm", on_metrics=metrics.append
    )
    train = [m["loss/train"] for m in metrics if "loss/train" in m]
    assert len(train) == 6 and all(math.isfinite(x) for x in train)

    model = AutoModelForSequenceClassification.from_pretrained(result.out_dir)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == model.config.eos_token_id
    record = json.loads((result.out_dir / "preflab.json").read_text())
    assert record["normalisation"]["applied_to"] == "config.preflab_reward_offset"
    assert model.config.preflab_reward_offset == pytest.approx(result.offset)

    eval_ids = set(record["split"]["eval_prompt_ids"])
    train_items = {(p.chosen_id, p.chosen): p.prompt for p in pairs if p.prompt_id not in eval_ids}
    train_items |= {(p.rejected_id, p.rejected): p.prompt for p in pairs if p.prompt_id not in eval_ids}
    scores = score(result.out_dir, [(prompt, text) for (_, text), prompt in train_items.items()])
    assert abs(sum(scores) / len(scores)) < 1e-4


def test_cli_trains_on_an_export_file(tiny_bert_dir, tmp_path, capsys):
    from trainer.reward_cli import main

    export = tmp_path / "export.jsonl"
    with export.open("w") as file:
        for p in make_pairs(n_prompts=8, k=3):
            row = {
                "prompt_id": p.prompt_id,
                "prompt": p.prompt,
                "chosen": [{"role": "assistant", "content": p.chosen}],
                "rejected": [{"role": "assistant", "content": p.rejected}],
                "chosen_id": p.chosen_id,
                "rejected_id": p.rejected_id,
                "chosen_tier": p.chosen_tier,
                "rejected_tier": p.rejected_tier,
                "ranking_id": p.ranking_id,
            }
            file.write(json.dumps(row) + "\n")
    out = tmp_path / "rm"
    args = ["--data", str(export), "--out", str(out), "--backbone", str(tiny_bert_dir)]
    assert main([*args, "--max-steps", "2", "--log-every", "1", "--max-length", "48"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [m["step"] for m in lines if "loss/train" in m] == [1, 2]
    record = json.loads((out / "preflab.json").read_text())
    assert record["data"]["source"]["path"] == f"local:{export.name}", "no local paths in the record"
    assert "Trained by `preflab train-reward`" in (out / "README.md").read_text()


@pytest.mark.slow
def test_default_minilm_backbone_trains_a_few_steps(tmp_path):
    from trainer.reward import resolve_backbone

    assert (resolve_backbone("default") / "config.json").is_file()
    pairs = make_pairs(n_prompts=12, k=3)
    config = RewardConfig(max_steps=3, batch_rankings=4, max_length=64, lr=5e-5, log_every=1)
    metrics: list[dict] = []
    result = train_reward_model(config, pairs, tmp_path / "rm", on_metrics=metrics.append)
    assert result.step == 3 and all(math.isfinite(m["loss/train"]) for m in metrics if "loss/train" in m)
    scores = score(result.out_dir, [(pairs[0].prompt, pairs[0].chosen)])
    assert len(scores) == 1 and math.isfinite(scores[0])
