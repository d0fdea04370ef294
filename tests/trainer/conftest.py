"""Fixtures for the trainer tests: a tiny Llama-style model and tokenizer built in code, nothing downloaded.

torch and transformers are imported inside the fixtures, so that without the trainer extras the test
modules skip (``pytest.importorskip``) instead of this file failing to import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers / huggingface_hub read it
os.environ["TRANSFORMERS_OFFLINE"] = "1"

SPECIAL_TOKENS = ["<unk>", "<pad>", "<bos>", "<eos>", "<|system|>", "<|user|>", "<|assistant|>"]
CORPUS = """
what is the capital of france paris is the capital of france
how do i reverse a list in python use slicing or the reversed function
why is the sky blue because of rayleigh scattering of sunlight
write a short poem about the sea the waves roll over the sand
tell me a joke a cat sat on a mat and a dog ran fast
"""
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }} <eos> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tokenizer(*, with_pad: bool = True, chat_template: str | None = CHAT_TEMPLATE):
    """A word-level tokenizer over CORPUS with role markers as special tokens."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(CORPUS.split()))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + words)}
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>" if with_pad else None,
        chat_template=chat_template,
    )


def build_model(tokenizer, *, seed: int = 0):
    """A 2-layer, 32-wide Llama with random weights.

    initializer_range=0.5 (not the usual 0.02) makes the next-token distribution depend strongly on the
    context, so a padding or attention-mask bug changes what gets sampled.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def save_tiny_model(directory: Path, **tokenizer_options) -> Path:
    tokenizer = build_tokenizer(**tokenizer_options)
    build_model(tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def make_tiny_model_dir(tmp_path: Path) -> Callable[..., Path]:
    """Build a tiny model directory with tokenizer options, e.g. ``with_pad=False``."""
    return lambda **tokenizer_options: save_tiny_model(tmp_path / "model", **tokenizer_options)


@pytest.fixture
def tiny_policy(tiny_model_dir: Path):
    from trainer.policy import load_policy

    return load_policy(tiny_model_dir, device="cpu")


# --------------------------------------------------------------------------------------------------
# A tiny BERT-like encoder for the reward-model tests (no chat template: the plain rendering is used)
# --------------------------------------------------------------------------------------------------

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_EXTRA_WORDS = ["good", "bad", "user", "assistant", "system", ":"]


def build_bert_tokenizer():
    """A word-level tokenizer over CORPUS that wraps a sequence in [CLS] ... [SEP], like BERT's."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(CORPUS.split()) | set(BERT_EXTRA_WORDS))
    vocab = {token: i for i, token in enumerate(BERT_SPECIAL_TOKENS + words)}
    backend = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = Whitespace()
    backend.add_special_tokens(BERT_SPECIAL_TOKENS)
    backend.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def save_tiny_bert(directory: Path, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT encoder (no dropout, so forward passes are deterministic) + tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    tokenizer = build_bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# --------------------------------------------------------------------------------------------------
# PPO: a tiny reward model saved in Hugging Face format (BERT classifier, seeded head)
# --------------------------------------------------------------------------------------------------


def save_tiny_reward_model(directory: Path, *, seed: int = 0) -> Path:
    """The tiny BERT with a seeded one-output classification head, saved as a reward-model directory."""
    import torch

    from trainer.reward_model import load_reward_model

    bert_dir = save_tiny_bert(directory / "bert", seed=seed)
    torch.manual_seed(seed)
    tokenizer, model = load_reward_model(bert_dir)
    out = directory / "rm"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"))
