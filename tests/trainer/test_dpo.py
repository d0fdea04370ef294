"""DPO: the loss matches the paper's formula, a tiny policy learns a preference it was shown (held-out
accuracy and margins rise, the loss falls), LoRA's reference is the adapters-off policy, the KL to the
reference is measured, and a stopped run resumes."""

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trainer.data import PreferencePair  # noqa: E402
from trainer.dpo import DPOConfig, dpo_loss, train_dpo  # noqa: E402
from trainer.policy import load_policy  # noqa: E402

QUESTIONS = [
    "what is the capital of france",
    "how do i reverse a list in python",
    "why is the sky blue",
    "write a short poem about the sea",
    "tell me a joke",
    "what is the sea",
    "why is the cat blue",
    "tell me a short poem",
]


def pairs() -> list[PreferencePair]:
    """The same taste everywhere: an answer about the sea beats one about a cat."""
    made = []
    for i, question in enumerate(QUESTIONS):
        made.append(
            PreferencePair(
                prompt_id=i + 1,
                prompt=[{"role": "user", "content": question}],
                chosen="the waves roll over the sand",
                rejected="a cat sat on a mat",
                chosen_id=2 * i + 1,
                rejected_id=2 * i + 2,
                ranking_id=i + 1,
            )
        )
    return made


def config(tiny_model_dir: Path, **overrides) -> DPOConfig:
    settings = dict(
        policy=str(tiny_model_dir),
        epochs=6,
        learning_rate=2e-3,
        batch_size=3,
        max_length=64,
        eval_fraction=0.25,
        beta=0.5,
        kl_samples=8,
        max_new_tokens=8,
        warmup_ratio=0.0,
    )
    return DPOConfig(**(settings | overrides))


def test_dpo_loss_follows_the_formula():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-1.0, -3.0, -2.0, -2.5))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.1)
    h = (-1.0 - -3.0) - (-2.0 - -2.5)
    assert losses.item() == pytest.approx(-math.log(1 / (1 + math.exp(-0.1 * h))))
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.05)
    smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.2)
    expected = 0.8 * -math.log(1 / (1 + math.exp(-0.1 * h))) + 0.2 * -math.log(1 / (1 + math.exp(0.1 * h)))
    assert smoothed.item() == pytest.approx(expected)
    ipo, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type="ipo")
    assert ipo.item() == pytest.approx((h - 5.0) ** 2)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(pc, pr, rc, rr, beta=0.1, loss_type="hinge-ish")


@pytest.mark.parametrize("lora_r", [0, 8])
def test_dpo_learns_the_preference_on_held_out_prompts(tiny_model_dir, tmp_path, lora_r):
    if lora_r:
        pytest.importorskip("peft")
    seen = []
    result = train_dpo(
        config(tiny_model_dir, lora_r=lora_r), pairs(), tmp_path / "dpo", on_metrics=seen.append
    )
    train = [m for m in seen if "loss/train" in m]
    assert train[-1]["loss/train"] < train[0]["loss/train"] < math.log(2) + 1e-3
    assert train[0]["rewards/margins"] < train[-1]["rewards/margins"]
    assert result.metrics["accuracy/eval"] == 1.0 and result.metrics["margins/eval"] > 0
    assert result.metrics["data/eval_pairs"] == 2 and result.metrics["data/train_pairs"] == 6
    assert result.metrics["eval/kl"] > 0, "it moved away from the reference"
    assert (
        not (tmp_path / "dpo" / "checkpoint").exists()
        and not (tmp_path / "dpo" / "reference_logps.pt").exists()
    )
    trained = load_policy(tmp_path / "dpo", device="cpu").model.state_dict()
    start = load_policy(tiny_model_dir, device="cpu").model.state_dict()
    assert set(trained) == set(start), "a plain causal LM"
    assert not torch.equal(
        trained["model.layers.0.mlp.up_proj.weight"], start["model.layers.0.mlp.up_proj.weight"]
    )


def test_a_stopped_dpo_run_resumes_with_its_stored_reference(tiny_model_dir, tmp_path):
    calls = {"n": 0}

    def stop_after_two() -> bool:  # polled by the reference pass (3 batches), then before each step
        calls["n"] += 1
        return calls["n"] > 5

    out = tmp_path / "dpo"
    stopped = train_dpo(config(tiny_model_dir, epochs=2), pairs(), out, should_stop=stop_after_two)
    assert stopped.stopped and stopped.step == 2
    assert (out / "checkpoint").is_dir() and (out / "reference_logps.pt").is_file()
    seen = []
    finished = train_dpo(config(tiny_model_dir, epochs=2), pairs(), out, on_metrics=seen.append)
    assert finished.step == 4 and [m["step"] for m in seen if "loss/train" in m] == [3, 4]


def test_the_reference_pass_reports_its_progress_and_stops_when_asked(tiny_model_dir, tmp_path):
    seen = []
    stopped = train_dpo(
        config(tiny_model_dir), pairs(), tmp_path / "dpo", on_metrics=seen.append, should_stop=lambda: True
    )
    assert stopped.stopped and stopped.step == 0
    assert not (tmp_path / "dpo" / "reference_logps.pt").exists(), "a pass cut short is not kept"
    train_dpo(config(tiny_model_dir, epochs=1), pairs(), tmp_path / "again", on_metrics=seen.append)
    progress = [m for m in seen if "reference/pairs_scored" in m]
    assert progress[0]["reference/pairs_scored"] == 0 and progress[0]["reference/pairs"] == len(pairs())


def test_a_run_cut_short_by_max_steps_scores_only_the_pairs_it_reads(tiny_model_dir, tmp_path):
    seen = []
    result = train_dpo(
        config(tiny_model_dir, max_steps=1, epochs=5), pairs(), tmp_path / "dpo", on_metrics=seen.append
    )
    assert result.step == 1 and result.metrics["data/train_pairs"] == 3, "one batch of 3 pairs"
    scored = [m for m in seen if "reference/pairs" in m]
    assert scored[0]["reference/pairs"] == 3 + 2, "the 3 pairs read and the 2 held out"
