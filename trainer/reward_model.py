"""A saved reward model, loaded and scored: by PPO (its reward), by the simulated labelers, by benches.

Inputs are encoded exactly as in training (``trainer.reward_data.encode``: the reward model's own
tokenizer and template, the prompt cut on the left); the score is the head's output less the offset the
run centred it by. Training lives in ``trainer.reward``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trainer.data import Chat
from trainer.reward_data import encode

PREFLAB_JSON = "preflab.json"
OFFSET_KEY = "preflab_reward_offset"
"""Model-config attribute holding the offset to subtract when the score head has no bias (decoders)."""
DEFAULT_MAX_LENGTH = 512
"""The input cap of a reward model whose preflab.json does not say (one trained elsewhere)."""


def load_reward_model(model_dir: Path | str, dtype: torch.dtype = torch.float32, num_labels: int | None = 1):
    """Tokenizer and ``AutoModelForSequenceClassification(num_labels=1)`` ready for training or scoring
    (``num_labels=None``: as many outputs as the directory's classifier has, for one trained elsewhere).

    Right padding; a tokenizer without a pad token borrows EOS, and ``model.config.pad_token_id`` is set,
    which decoder classifiers need to find each sequence's last real token (last-token pooling).
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    tokenizer.padding_side = "right"
    # PrefLab cuts every input itself (trainer.reward_data.truncate: the prompt on the left, specials
    # kept), so the saved model_max_length (for other readers) must not make the tokenizer warn
    tokenizer.model_max_length = int(1e30)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"Tokenizer in {model_dir} has neither a pad nor an EOS token.")
        tokenizer.pad_token = tokenizer.eos_token
    labels = {} if num_labels is None else {"num_labels": num_labels}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, local_files_only=True, dtype=dtype, **labels
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def score_head(model: torch.nn.Module) -> tuple[str, torch.nn.Linear]:
    """The final one-output linear layer (``classifier`` for BERT-like, ``score`` for Llama-like)."""
    heads = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == 1
    ]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no one-output linear head")
    return heads[-1]


def pad(sequences: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad into ``input_ids`` and ``attention_mask``, both (N, T)."""
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, seq in enumerate(sequences):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, : len(seq)] = 1
    return input_ids, attention_mask


def rewards_of(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, label: int | None = None
) -> torch.Tensor:
    """One forward pass → one scalar reward per row, (N,) float32: the one logit, or with ``label`` (a
    classifier with several outputs) that label's logit less the log-sum-exp of the others, which is
    ``log p(label) - log(1 - p(label))``: the log-odds of the label."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()  # (N, L)
    if label is None:
        return logits.squeeze(-1)
    others = torch.cat([logits[:, :label], logits[:, label + 1 :]], dim=1)  # (N, L - 1)
    return logits[:, label] - torch.logsumexp(others, dim=1)


class RewardScorer:
    """The frozen reward model with ITS OWN tokenizer and template (``trainer.reward_data.encode``).

    ``label``: a classifier brought from outside with several outputs, scored by that label's log-odds
    (``rewards_of``); ``reads="completion"``: it reads the completion alone, as such classifiers were
    trained to (a toxicity classifier scores text, not a chat), rather than prompt and completion."""

    def __init__(
        self, reward_dir: Path, device, max_length: int | None, *, label: int | None = None, reads="chat"
    ) -> None:
        self.tokenizer, self.model = load_reward_model(reward_dir, num_labels=1 if label is None else None)
        self.label, self.reads = label, reads
        self.model.to(device).eval().requires_grad_(False)
        self.offset = float(getattr(self.model.config, OFFSET_KEY, 0.0) or 0.0)
        if max_length is None:
            record = reward_dir / PREFLAB_JSON
            max_length = (
                json.loads(record.read_text())["config"]["max_length"]
                if record.is_file()
                else DEFAULT_MAX_LENGTH
            )
        self.max_length = max_length
        self.device = device

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> torch.Tensor:
        if self.reads == "completion":
            sequences = [
                self.tokenizer(c, truncation=True, max_length=self.max_length)["input_ids"]
                for c in completions
            ]
        else:
            sequences = [
                encode(self.tokenizer, p, c, self.max_length)
                for p, c in zip(prompts, completions, strict=True)
            ]
        input_ids, attention_mask = pad(sequences, self.tokenizer.pad_token_id)
        scores = rewards_of(self.model, input_ids.to(self.device), attention_mask.to(self.device), self.label)
        return scores - self.offset  # (B,)


def score(
    model_dir: Path | str,
    prompts_and_completions: Sequence[tuple[Chat | str, str]],
    batch_size: int = 16,
    *,
    max_length: int | None = None,
    device: str | torch.device | None = None,
) -> list[float]:
    """Centred rewards of ``(prompt, completion)`` pairs under a saved reward model.

    Inputs are encoded as in training; ``max_length`` defaults to the one recorded in preflab.json.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scorer = RewardScorer(Path(model_dir), device, max_length)
    out: list[float] = []
    for start in range(0, len(prompts_and_completions), batch_size):
        batch = prompts_and_completions[start : start + batch_size]
        out.extend(scorer([prompt for prompt, _ in batch], [completion for _, completion in batch]).tolist())
    return out
