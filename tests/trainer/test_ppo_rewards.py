"""PPO's rewards from elsewhere: an outside classifier's label log-odds as the reward (the detoxification
recipe), and several rewards mixed, each standardised and drawn as its own curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from tests.trainer.test_ppo import PROMPTS, small_config  # noqa: E402
from trainer.ppo import train_ppo  # noqa: E402


def save_tiny_classifier(directory: Path, labels: list[str]) -> Path:
    """A classifier "trained elsewhere": the tiny BERT with a seeded head of several outputs, as a
    toxicity classifier would be (its labels named in the config)."""
    from transformers import AutoModelForSequenceClassification

    from tests.trainer.conftest import save_tiny_bert

    bert = save_tiny_bert(directory / "bert")
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(
        bert,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)},
    )
    out = directory / "classifier"
    model.save_pretrained(out)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(bert).save_pretrained(out)
    return out


def test_an_outside_classifier_scores_a_labels_log_odds_on_the_completion_alone(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from trainer.reward_model import RewardScorer

    directory = save_tiny_classifier(tmp_path, ["nothate", "hate", "offensive"])
    scorer = RewardScorer(directory, "cpu", 64, label=0, reads="completion")
    completions = ["the sea is blue", "a cat sat on the mat"]
    scores = scorer([PROMPTS[0], PROMPTS[1]], completions)

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        for completion, got in zip(completions, scores.tolist(), strict=True):
            logits = model(**tokenizer(completion, return_tensors="pt")).logits[0]  # the text alone
            probability = logits.softmax(-1)[0]
            assert got == pytest.approx(torch.log(probability / (1 - probability)).item(), abs=1e-4)
    other_prompts = scorer([PROMPTS[2], PROMPTS[0]], completions)
    torch.testing.assert_close(other_prompts, scores)  # the prompt does not enter


def test_ppo_trains_against_an_outside_classifier(tiny_model_dir, tmp_path):
    """The detoxification recipe's shape: PPO against a classifier's "not hate" log-odds. The value
    model cannot start from a head of several outputs, so it starts from the policy."""
    directory = save_tiny_classifier(tmp_path, ["nothate", "hate"])
    config = small_config(tiny_model_dir, directory, reward_label=0, reward_input="completion")
    events: list[dict] = []
    result = train_ppo(config, PROMPTS, tmp_path / "ppo", on_metrics=events.append)
    assert result.step == 2 and result.stop_reason == "steps"
    assert all("reward/score" in e for e in events if "loss/policy" in e)
    assert (tmp_path / "ppo" / "model.safetensors").is_file()


def test_ppo_mixes_several_rewards_each_standardised_and_logged(
    tiny_model_dir, tiny_reward_model_dir, tmp_path
):
    """The project's reward model plus a safety classifier: each standardised against the starting
    policy's first scores (kept for a resumed run), summed with weights, each drawn as its own curve."""
    from trainer.reward_mix import NORMALISATION_FILE, RewardSpec, WeightedRewards
    from trainer.reward_model import RewardScorer

    classifier = save_tiny_classifier(tmp_path, ["nothate", "hate"])
    extra = {"directory": str(classifier), "weight": -0.5, "name": "hate", "label": 1, "reads": "completion"}
    config = small_config(tiny_model_dir, tiny_reward_model_dir, reward_name="helpful", extra_rewards=[extra])
    events: list[dict] = []
    result = train_ppo(config, PROMPTS, tmp_path / "ppo", on_metrics=events.append)
    assert result.step == 2
    steps = [e for e in events if "loss/policy" in e]
    assert all({"reward/component/helpful", "reward/component/hate"} <= set(e) for e in steps)
    saved = json.loads((tmp_path / "ppo" / NORMALISATION_FILE).read_text())
    assert [r["directory"] for r in saved["rewards"]] == [str(tiny_reward_model_dir), str(classifier)]

    # the mix is the weighted sum of each reward standardised by the constants of its first call
    specs = [
        RewardSpec(str(tiny_reward_model_dir), 1.0, "helpful"),
        RewardSpec(str(classifier), -0.5, "hate", label=1, reads="completion"),
    ]
    mix = WeightedRewards(specs, "cpu", 64, tmp_path / "fresh")
    texts = ["the sea is blue", "a cat sat on the mat", "paris", "why is the sky blue"]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(4)]
    first = mix(prompts, texts)
    assert first.mean().item() == pytest.approx(0.0, abs=1e-5), "standardised on these very scores"
    helpful = RewardScorer(tiny_reward_model_dir, "cpu", 64)(prompts, texts)
    hate = RewardScorer(classifier, "cpu", 64, label=1, reads="completion")(prompts, texts)
    (m1, s1), (m2, s2) = mix.normalisation
    expected = (helpful - m1) / s1 - 0.5 * (hate - m2) / s2
    torch.testing.assert_close(first, expected, rtol=1e-4, atol=1e-4)
    again = WeightedRewards(specs, "cpu", 64, tmp_path / "fresh")  # a resumed run reads the constants back
    assert again.normalisation == [tuple(pair) for pair in mix.normalisation]
    torch.testing.assert_close(again(prompts[:2], texts[:2]), first[:2], rtol=1e-4, atol=1e-4)
