"""SFT on demonstrations: the loss falls on the answers (and only they are learnt), the held-out loss is
measured, LoRA trains adapters only, a stopped run resumes, and the result loads as a policy."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from trainer.data import Demonstration  # noqa: E402
from trainer.finetune import IGNORE, encode_answer, pad_batch, split_prompt_ids  # noqa: E402
from trainer.policy import load_policy  # noqa: E402
from trainer.sft import SFTConfig, train_sft  # noqa: E402

ANSWERS = [
    ("what is the capital of france", "paris is the capital of france"),
    ("how do i reverse a list in python", "use slicing or the reversed function"),
    ("why is the sky blue", "because of rayleigh scattering of sunlight"),
    ("write a short poem about the sea", "the waves roll over the sand"),
    ("tell me a joke", "a cat sat on a mat and a dog ran fast"),
    ("what is the capital of france", "paris"),
]


def demonstrations() -> list[Demonstration]:
    return [
        Demonstration(
            prompt_id=i + 1, prompt=[{"role": "user", "content": q}], answer=a, demonstration_id=i + 1
        )
        for i, (q, a) in enumerate(ANSWERS)
    ]


def config(tiny_model_dir: Path, **overrides) -> SFTConfig:
    settings = dict(
        policy=str(tiny_model_dir),
        epochs=15,
        learning_rate=3e-3,
        batch_size=3,
        max_length=64,
        eval_fraction=0.34,
    )
    return SFTConfig(**(settings | overrides))


def test_only_the_answer_is_learnt_and_it_ends_with_the_end_of_turn(tiny_policy):
    tokenizer = tiny_policy.tokenizer
    prompt, answer = encode_answer(
        tokenizer, [{"role": "user", "content": "why is the sky blue"}], "because", 64
    )
    assert tokenizer.decode(prompt).endswith("<|assistant|>")
    assert tokenizer.decode(answer).split() == ["because", "<eos>"]
    batch = pad_batch([(prompt, answer), (prompt[:2], answer[:1])], tokenizer.pad_token_id)
    labels = batch["labels"]
    assert labels[0].tolist() == [IGNORE] * len(prompt) + answer
    assert (labels[1] != IGNORE).sum() == 1 and batch["attention_mask"][1].sum() == 3
    # too long: the answer keeps at least half the budget, the prompt loses its oldest tokens
    prompt, answer = encode_answer(
        tokenizer, [{"role": "user", "content": "tell me a joke " * 20}], "a cat " * 20, 30
    )
    assert len(prompt) + len(answer) == 30 and len(answer) >= 15
    assert tokenizer.decode(prompt).endswith("<|assistant|>")


def test_held_out_prompts_are_whole_and_seeded():
    ids = [1, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    held = split_prompt_ids(ids, 0.2, seed=3)
    assert held == split_prompt_ids(ids, 0.2, seed=3) and len(held) == 2
    assert split_prompt_ids([1, 1, 1], 0.5, seed=0) == set(), "one prompt: nothing to spare"


def test_sft_lowers_the_loss_and_saves_a_policy_that_generates(tiny_model_dir, tmp_path):
    seen = []
    result = train_sft(config(tiny_model_dir), demonstrations(), tmp_path / "sft", on_metrics=seen.append)
    train = [m["loss/train"] for m in seen if "loss/train" in m]
    held_out = [m["loss/eval"] for m in seen if "loss/eval" in m]
    assert train[-1] < 0.5 * train[0], train
    assert len(held_out) == 1 + 15, "before training and after every epoch"
    assert result.metrics["loss/eval_before"] == held_out[0]
    assert (
        result.metrics["data/eval_demonstrations"] == 2 and result.metrics["data/train_demonstrations"] == 4
    )
    assert not (tmp_path / "sft" / "checkpoint").exists()
    policy = load_policy(tmp_path / "sft", device="cpu")
    text = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "why is the sky blue"}], tokenize=False, add_generation_prompt=True
    )
    ids = policy.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = policy.model.generate(
        ids, max_new_tokens=6, do_sample=False, pad_token_id=policy.tokenizer.pad_token_id
    )
    assert policy.tokenizer.decode(out[0, ids.shape[1] :]).split()[:3] == ["because", "of", "rayleigh"]


def test_lora_sft_trains_adapters_only_and_saves_merged_weights(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    seen = []
    train_sft(
        config(tiny_model_dir, lora_r=8, lora_alpha=16, epochs=8),
        demonstrations(),
        tmp_path / "lora",
        on_metrics=seen.append,
    )
    train = [m["loss/train"] for m in seen if "loss/train" in m]
    assert train[-1] < train[0]
    saved = sorted(p.name for p in (tmp_path / "lora").iterdir())
    assert "adapter_config.json" not in saved and "model.safetensors" in saved
    before = load_policy(tiny_model_dir, device="cpu").model.state_dict()
    after = load_policy(tmp_path / "lora", device="cpu").model.state_dict()
    assert set(before) == set(after), "a plain causal LM, no adapter weights left"
    assert not torch.equal(
        before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"]
    )
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"]), (
        "not a LoRA target"
    )


def test_a_stopped_sft_run_resumes_from_its_checkpoint(tiny_model_dir, tmp_path):
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    out = tmp_path / "sft"
    stopped = train_sft(config(tiny_model_dir, epochs=3), demonstrations(), out, should_stop=stop_after_three)
    assert stopped.stopped and stopped.step == 3 and (out / "checkpoint").is_dir()
    seen = []
    finished = train_sft(config(tiny_model_dir, epochs=3), demonstrations(), out, on_metrics=seen.append)
    assert not finished.stopped and finished.step == 6
    assert [m["step"] for m in seen if "loss/train" in m] == [4, 5, 6], "resumed, not restarted"


def test_answer_logprobs_match_a_full_log_softmax_over_every_position(tiny_policy):
    from trainer.finetune import answer_logprobs

    tokenizer, model = tiny_policy.tokenizer, tiny_policy.model
    chats = [[{"role": "user", "content": "tell me a joke " * n}] for n in (1, 4)]
    sequences = [encode_answer(tokenizer, chat, "a cat sat on a mat", 64) for chat in chats]
    batch = pad_batch(sequences, tokenizer.pad_token_id)
    summed, counts = answer_logprobs(model, batch)
    full = torch.log_softmax(
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits, -1
    )
    for row, (prompt, answer) in enumerate(sequences):
        expected = sum(full[row, len(prompt) + i - 1, token].item() for i, token in enumerate(answer))
        assert summed[row].item() == pytest.approx(expected, abs=1e-4)
        assert counts[row].item() == len(answer)
