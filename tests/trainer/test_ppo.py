"""PPO: the pure pieces against hand-worked numbers, then a few real steps on tiny models built in code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from trainer.ppo import train_ppo  # noqa: E402
from trainer.ppo_config import PPOConfig  # noqa: E402
from trainer.ppo_core import (  # noqa: E402
    AdaptiveKLController,
    FixedKLController,
    apply_missing_eos_penalty,
    compute_gae,
    compute_rewards,
    kl_horizon_for,
    ppo_losses,
    whiten,
)

PROMPTS = [
    [{"role": "user", "content": "what is the capital of france"}],
    [{"role": "user", "content": "tell me a joke"}],
    [{"role": "user", "content": "why is the sky blue"}],
    [{"role": "user", "content": "write a short poem about the sea"}],
]


def test_compute_gae_hand_worked():
    # Row 0, T=3, gamma=1, lam=0.95: rewards [0, 0, 1], values [0.5, 0.6, 0.7], all valid.
    #   t=2: delta = 1 + 0   - 0.7 = 0.3              A2 = 0.3
    #   t=1: delta = 0 + 0.7 - 0.6 = 0.1              A1 = 0.1 + 0.95 * 0.3   = 0.385
    #   t=0: delta = 0 + 0.6 - 0.5 = 0.1              A0 = 0.1 + 0.95 * 0.385 = 0.46575
    #   returns = A + V = [0.96575, 0.985, 1.0]
    # Row 1, mask [1, 1, 0]: the junk at t=2 (reward 5, value 9) must not leak in.
    #   t=1: delta = 1 + 0 - 0.6 = 0.4 (V beyond the last valid token is 0)   A1 = 0.4
    #   t=0: delta = 0 + 0.6 - 0.5 = 0.1                                        A0 = 0.1 + 0.95 * 0.4 = 0.48
    #   returns = [0.98, 1.0, 0]
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [0.5, 0.6, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    torch.testing.assert_close(advantages, torch.tensor([[0.46575, 0.385, 0.3], [0.48, 0.4, 0.0]]))
    torch.testing.assert_close(returns, torch.tensor([[0.96575, 0.985, 1.0], [0.98, 1.0, 0.0]]))


def test_rewards_are_kl_penalty_plus_score_on_last_token():
    # beta = 0.1; row 0 has 3 valid tokens, row 1 has 2 (then padding).
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, -7.0]])
    ref_logprobs = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    scores = torch.tensor([2.0, -1.0])
    rewards, kl = compute_rewards(scores, logprobs, ref_logprobs, mask, beta=0.1)
    # kl = logp - ref: row 0 [0.5, -1.0, 0.0]; row 1 [1.0, 0.0, (masked) 0]
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    # rewards = -0.1 * kl, + score on the last valid token: row 0 at t=2, row 1 at t=1
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.1, 2.0], [-0.1, -1.0, 0.0]]))


def test_missing_eos_penalty_is_subtracted_so_unfinished_completions_keep_their_order():
    scores = torch.tensor([3.0, 3.0, -2.0])
    finished = torch.tensor([True, False, False])
    torch.testing.assert_close(
        apply_missing_eos_penalty(scores, finished, 1.0), torch.tensor([3.0, 2.0, -3.0])
    )
    torch.testing.assert_close(apply_missing_eos_penalty(scores, finished, None), scores)


def test_the_kl_horizon_follows_the_run_length_unless_set():
    assert kl_horizon_for(PPOConfig(steps=40, batch_size=8)) == 16  # a twentieth of 320 completions
    assert kl_horizon_for(PPOConfig(steps=3, batch_size=8)) == 8  # at least one batch
    assert kl_horizon_for(PPOConfig(steps=20, batch_size=8, kl_horizon=10_000)) == 10_000
    # a run that sits above its target all along can raise beta about e^4-fold, whatever its length,
    # and doubles it within 7 steps of a 30-step run
    for steps in (20, 200):
        config = PPOConfig(steps=steps, batch_size=8)
        ctl = AdaptiveKLController(0.05, target=6.0, horizon=kl_horizon_for(config))
        for _ in range(steps):
            ctl.update(current_kl=12.0, n_steps=8)
        assert 35.0 < ctl.value / 0.05 < 60.0
    ctl = AdaptiveKLController(0.05, target=6.0, horizon=kl_horizon_for(PPOConfig(steps=30, batch_size=8)))
    for _ in range(7):
        ctl.update(current_kl=12.0, n_steps=8)
    assert ctl.value > 2 * 0.05


def test_the_adaptive_beta_never_winds_down_below_its_floor():
    """A run starts at KL 0: below its target, the plain controller lowers beta step after step (to about
    half in the fourth issue-12 measurement), and the KL overshoots once the policy moves."""
    plain = AdaptiveKLController(0.05, target=6.0, horizon=12)
    floored = AdaptiveKLController(0.05, target=6.0, horizon=12, floor=0.05)
    for _ in range(10):  # ten steps of a policy still near its start
        plain.update(current_kl=1.0, n_steps=8)
        floored.update(current_kl=1.0, n_steps=8)
    assert plain.value < 0.05 * 0.3 and floored.value == 0.05
    floored.update(current_kl=12.0, n_steps=8)  # above target: it tightens as before
    assert floored.value == pytest.approx(0.05 * (1 + 0.2 * 8 / 12))


def test_adaptive_kl_controller_follows_the_formula():
    # target 6, horizon 10000, 8 completions: e = clip(KL/6 - 1, ±0.2); beta *= 1 + e * 8 / 10000
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    ctl.update(current_kl=6.6, n_steps=8)  # e = 0.1
    assert ctl.value == pytest.approx(0.1 * (1 + 0.1 * 8 / 10_000))
    before = ctl.value
    ctl.update(current_kl=60.0, n_steps=8)  # e = 9 → clipped to 0.2
    assert ctl.value == pytest.approx(before * (1 + 0.2 * 8 / 10_000))
    before = ctl.value
    ctl.update(current_kl=3.0, n_steps=8)  # e = -0.5 → clipped to -0.2: beta falls
    assert ctl.value == pytest.approx(before * (1 - 0.2 * 8 / 10_000))
    assert ctl.value < before
    fixed = FixedKLController(0.1)
    fixed.update(100.0, 8)
    assert fixed.value == 0.1


def test_whiten_keeps_the_mask_and_normalises_valid_tokens():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 100.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = whiten(values, mask)
    assert out[1, 1] == 0 and out[1, 2] == 0
    valid = out[mask.bool()]
    assert valid.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert valid.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    kept_mean = whiten(values, mask, shift_mean=False)[mask.bool()]
    assert kept_mean.mean().item() == pytest.approx(values[mask.bool()].mean().item(), abs=1e-5)


def test_ppo_losses_clip():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 1.0]]))  # ratio 2 (clipped to 1.2), ratio 1
    adv = torch.ones(1, 2)
    values = torch.zeros(1, 2)
    pg, vf, clipfrac = ppo_losses(new, old, adv, values + 1.0, values, values + 1.0, mask, 0.2, 0.2)
    # token 0: max(-2, -1.2) = -1.2; token 1: -1 → mean -1.1. Value: clipped pred 0.2, (0.2-1)^2 = 0.64
    assert pg.item() == pytest.approx(-1.1)
    assert clipfrac.item() == pytest.approx(0.5)
    assert vf.item() == pytest.approx(0.5 * 0.64)


def small_config(policy: Path, rm: Path, **overrides) -> PPOConfig:
    options = dict(
        reward_model=str(rm),
        policy=str(policy),
        steps=2,
        batch_size=4,
        minibatch_size=2,
        ppo_epochs=2,
        max_new_tokens=6,
        learning_rate=1e-3,
        target_kl=1.0,
        kl_horizon=100,
        temperature=1.0,
        checkpoint_every=1,
        sample_every=1,
        num_samples=2,
    )
    return PPOConfig(**(options | overrides))


def test_ppo_runs_moves_parameters_and_saves_a_loadable_policy(
    tiny_model_dir, tiny_reward_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    events: list[dict] = []
    out = tmp_path / "ppo"
    result = train_ppo(
        small_config(tiny_model_dir, tiny_reward_model_dir),
        PROMPTS,
        out,
        on_metrics=events.append,
        eval_prompts=PROMPTS[:2],
    )
    assert result.step == 2 and not result.stopped and result.stop_reason == "steps"
    steps = [e for e in events if "loss/policy" in e]
    assert [e["step"] for e in steps] == [1, 2]
    for key in (
        "reward/score",
        "objective/kl",
        "objective/entropy",
        "loss/policy",
        "loss/value",
        "policy/clipfrac",
        "objective/beta",
        "response/length",
        "time/tokens_per_second",
        "step",
    ):
        assert key in steps[-1], key
    samples = [e for e in events if "samples" in e]
    assert samples and set(samples[0]["samples"][0]) == {"prompt", "completion", "score"}
    for key in ("eval/reward_before", "eval/reward_after", "eval/kl_after"):
        assert key in result.metrics
    # step 1: policy == reference, so KL = 0 < target 1: the plain controller would lower beta
    # (by 1 - 0.2 * 4 / 100); its floor, the initial kl_coef, keeps it
    assert steps[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert steps[0]["objective/beta"] == 0.05 and steps[1]["objective/beta"] == 0.05

    assert (out / "model.safetensors").is_file()
    record = json.loads((out / "preflab.json").read_text())
    assert record["step"] == 2 and record["config"]["steps"] == 2 and "eval/reward_after" in record["eval"]

    trained = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    moved = any(
        not torch.equal(a, b)
        for a, b in zip(trained.state_dict().values(), start.state_dict().values(), strict=True)
    )
    assert moved
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    ids = tokenizer("<bos> <|user|> tell me a joke <eos> <|assistant|>", return_tensors="pt")
    generated = trained.generate(
        **ids, max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    assert generated.shape[1] > ids["input_ids"].shape[1]


def test_should_stop_then_resume_continues(tiny_model_dir, tiny_reward_model_dir, tmp_path):
    config = small_config(tiny_model_dir, tiny_reward_model_dir, steps=3, sample_every=0)
    out = tmp_path / "ppo"
    events: list[dict] = []

    def after_the_first_step() -> bool:
        return any("loss/policy" in e for e in events)

    first = train_ppo(config, PROMPTS, out, on_metrics=events.append, should_stop=after_the_first_step)
    assert first.stopped and first.step == 1 and first.stop_reason == "should_stop"
    assert not (out / "model.safetensors").exists()
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 1

    events.clear()
    second = train_ppo(config, PROMPTS, out, on_metrics=events.append)
    assert not second.stopped and second.step == 3
    assert [e["step"] for e in events if "loss/policy" in e] == [2, 3]
    assert (out / "model.safetensors").is_file()


def test_a_stop_in_the_middle_of_sampling_takes_effect_at_once(
    tiny_model_dir, tiny_reward_model_dir, tmp_path
):
    """Polled between decoding steps and optimizer steps, not only between PPO steps: a worker told to
    stop (or a job cancelled) leaves within seconds even when one step takes minutes."""
    config = small_config(tiny_model_dir, tiny_reward_model_dir, steps=3, max_new_tokens=40, sample_every=0)
    out = tmp_path / "ppo"
    polls: list[int] = []

    def stop_on_the_third_poll() -> bool:
        polls.append(1)
        return len(polls) >= 3

    events: list[dict] = []
    first = train_ppo(config, PROMPTS, out, on_metrics=events.append, should_stop=stop_on_the_third_poll)
    assert first.stopped and first.step == 0 and first.stop_reason == "should_stop"
    assert len(polls) == 3, "nothing ran after the stop was asked for"
    assert not [e for e in events if "loss/policy" in e], "no step finished"
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 0
    second = train_ppo(config, PROMPTS, out)
    assert not second.stopped and second.step == 3


def test_kl_ceiling_stops_early(tiny_model_dir, tiny_reward_model_dir, tmp_path):
    config = small_config(tiny_model_dir, tiny_reward_model_dir, steps=5, kl_ceiling=-1e9, sample_every=0)
    result = train_ppo(config, PROMPTS, tmp_path / "ppo")
    assert result.step == 1 and result.stop_reason == "kl_ceiling"


def collapsed_policy(directory: Path) -> Path:
    """The tiny policy with its output layer scaled 1000-fold: each next token is all but certain, the
    state a PPO run reaches when it collapses onto one answer."""
    from tests.trainer.conftest import build_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    with torch.no_grad():
        model.lm_head.weight.mul_(1000.0)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_a_collapsed_policy_stops_its_run_with_the_reason(tiny_reward_model_dir, tmp_path):
    events: list[dict] = []
    config = small_config(collapsed_policy(tmp_path / "collapsed"), tiny_reward_model_dir, steps=5)
    result = train_ppo(config, PROMPTS, tmp_path / "ppo", on_metrics=events.append, eval_prompts=PROMPTS[:2])
    assert result.step == 1 and result.stop_reason == "entropy_collapse"
    step = next(e for e in events if "loss/policy" in e)
    assert step["objective/entropy_per_token"] < config.min_entropy
    assert json.loads((tmp_path / "ppo" / "preflab.json").read_text())["stop_reason"] == "entropy_collapse"
    assert (tmp_path / "ppo" / "model.safetensors").is_file(), "the stopped run still saves its policy"


def test_the_default_kl_ceiling_is_twice_the_target(tiny_model_dir, tiny_reward_model_dir, tmp_path):
    from trainer.ppo_guards import kl_ceiling_of

    assert (
        kl_ceiling_of(None, 6.0) == 12.0
        and kl_ceiling_of(3.0, 6.0) == 3.0
        and kl_ceiling_of(None, None) is None
    )
    # a target so small that step 2's KL passes twice it
    config = small_config(tiny_model_dir, tiny_reward_model_dir, steps=6, target_kl=1e-6, sample_every=0)
    result = train_ppo(config, PROMPTS, tmp_path / "ppo")
    assert result.stop_reason == "kl_ceiling" and result.step == 2


def test_periodic_evaluations_register_the_best_within_the_kl_budget(
    tiny_model_dir, tiny_reward_model_dir, tmp_path
):
    events: list[dict] = []
    config = small_config(tiny_model_dir, tiny_reward_model_dir, steps=3, eval_every=1, kl_ceiling=1e9)
    result = train_ppo(config, PROMPTS, tmp_path / "ppo", on_metrics=events.append, eval_prompts=PROMPTS[:2])
    evaluations = [e for e in events if "eval/reward" in e]
    assert [e["step"] for e in evaluations] == [1, 2, 3], "every eval_every steps, and at the end"
    within = [e for e in evaluations if e["eval/kl"] <= config.target_kl]
    chosen = (
        max(within, key=lambda e: e["eval/reward"])
        if within
        else min(evaluations, key=lambda e: e["eval/kl"])
    )
    assert result.metrics["checkpoint_step"] == chosen["step"]
    assert result.metrics["checkpoint"] == ("last" if chosen["step"] == 3 else "best")
    assert result.metrics["eval/reward_after"] == chosen["eval/reward"]
    assert result.metrics["eval/reward_last"] == evaluations[-1]["eval/reward"]


def test_best_snapshot_keeps_the_best_within_budget_and_restores_it():
    from torch import nn

    from trainer.ppo_guards import BestSnapshot

    model = nn.Linear(2, 1)
    best = BestSnapshot(kl_budget=6.0)
    assert best.consider(model, step=1, reward=0.1, kl=8.0)  # over budget, but nothing better yet
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert best.consider(model, step=2, reward=0.0, kl=5.0)  # within budget beats over budget
    kept = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert not best.consider(model, step=3, reward=0.9, kl=7.0)  # better reward, but over budget
    assert not best.consider(model, step=4, reward=-0.1, kl=1.0)  # within budget, worse reward
    assert best.consider(model, step=5, reward=0.3, kl=6.0)
    with torch.no_grad():
        model.weight.fill_(3.0)
    best.restore_into(model)
    assert torch.equal(model.weight, torch.full_like(kept, 2.0))
    assert best.summary(last_step=6) == {
        "checkpoint": "best",
        "checkpoint_step": 5,
        "eval/reward_after": 0.3,
        "eval/kl_after": 6.0,
        "eval/within_kl_budget": 1.0,
    }


def test_value_model_starts_from_a_compatible_reward_model(tiny_model_dir, tiny_reward_model_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    from trainer.ppo_models import build_value_model

    torch.manual_seed(0)
    rm = LlamaForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1, local_files_only=True)
    rm.save_pretrained(tmp_path / "rm")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    tokenizer.save_pretrained(tmp_path / "rm")
    value_model = build_value_model(tiny_model_dir, tmp_path / "rm", tokenizer, tokenizer)
    torch.testing.assert_close(value_model.head.weight, rm.score.weight)
    torch.testing.assert_close(value_model.backbone.embed_tokens.weight, rm.model.embed_tokens.weight)

    # a BERT reward model reads other tokens: the value model starts from the policy, head at zero
    bert_tokenizer = AutoTokenizer.from_pretrained(tiny_reward_model_dir, local_files_only=True)
    fallback = build_value_model(tiny_model_dir, tiny_reward_model_dir, tokenizer, bert_tokenizer)
    assert torch.count_nonzero(fallback.head.weight) == 0


def test_lora_trains_adapters_only_and_saves_a_merged_policy(tiny_model_dir, tiny_reward_model_dir, tmp_path):
    pytest.importorskip("peft", reason="LoRA needs peft (in the trainer extras)")
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    events: list[dict] = []
    out = tmp_path / "ppo-lora"
    config = small_config(tiny_model_dir, tiny_reward_model_dir, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    result = train_ppo(config, PROMPTS, out, on_metrics=events.append, eval_prompts=PROMPTS[:2])
    assert result.step == 2 and not result.stopped
    steps = [e for e in events if "loss/policy" in e]
    # the reference is the policy with adapters off: identical to the start, so the first KL is 0
    assert steps[0]["objective/kl"] == pytest.approx(0.0, abs=1e-5)
    assert result.metrics["eval/kl_after"] != 0.0

    # saved merged: plain transformers loads it, no adapter weights, and the weights moved
    saved = load_file(out / "model.safetensors")
    assert not any("lora" in name for name in saved)
    start = load_file(tiny_model_dir / "model.safetensors")
    assert saved.keys() == start.keys()
    assert any(not torch.equal(saved[name], start[name]) for name in start)
    AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    # only linear layers got adapters: the embeddings and norms did not move
    assert torch.equal(saved["model.embed_tokens.weight"], start["model.embed_tokens.weight"])
    assert all(torch.equal(saved[n], start[n]) for n in start if "norm" in n)
    assert json.loads((out / "preflab.json").read_text())["config"]["lora_r"] == 4


def test_forward_logprobs_match_a_full_log_softmax(tiny_model_dir):
    """The fast path (logits for the completion only, logsumexp) equals the textbook computation."""
    from transformers import AutoModelForCausalLM

    from trainer.ppo_models import forward_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True).eval()
    torch.manual_seed(0)
    input_ids = torch.randint(5, model.config.vocab_size, (2, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = 0  # left padding
    response = input_ids[:, -4:]
    with torch.no_grad():
        logprobs, entropy = forward_logprobs(model, input_ids, attention_mask, response, 0.7, entropy=True)
        positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
        full = torch.log_softmax(logits[:, -5:-1] / 0.7, dim=-1)
    torch.testing.assert_close(logprobs, full.gather(2, response.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(entropy, -(full.exp() * full).sum(-1))
    assert forward_logprobs(model, input_ids, attention_mask, response, 0.7)[1] is None


def test_sampled_logprobs_match_a_forward_over_the_completion(tiny_policy):
    """The rollout's log-probs and entropies, taken from ``generate``'s logits, equal a fresh forward over
    prompt + completion (left padding, rows that stop early) to float rounding: the rollout may skip that
    forward without changing the PPO ratio."""
    from trainer.ppo_models import forward_logprobs
    from trainer.ppo_rollout import sample

    tokenizer, model = tiny_policy.tokenizer, tiny_policy.model.eval()
    prompts = [tokenizer("hello there", add_special_tokens=False)["input_ids"], [7, 8, 9, 10, 11, 12, 13]]
    config = PPOConfig(reward_model="unused", temperature=0.7, top_p=0.9, max_new_tokens=12)
    torch.manual_seed(0)
    rollout = sample(model, tokenizer, tiny_policy.stop_token_ids, prompts, config, "cpu")
    assert rollout.query_mask[0, 0] == 0  # the shorter prompt is left-padded
    with torch.no_grad():
        logprobs, entropy = forward_logprobs(
            model, rollout.input_ids, rollout.attention_mask, rollout.response, 0.7, entropy=True
        )
    mask = rollout.response_mask
    torch.testing.assert_close(rollout.logprobs, logprobs * mask, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rollout.entropy, entropy * mask, atol=1e-4, rtol=1e-4)
    assert (rollout.logprobs[mask.bool()] < 0).all()
