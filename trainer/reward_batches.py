"""Reward-model batches and loss: one ranking is one batch element; all completions of a batch go through
ONE forward pass, and every pair's rewards are gathered from it by index (InstructGPT: K encodes give
C(K,2) pairs); the Bradley-Terry loss over those pairs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trainer.reward_data import Ranking, encode
from trainer.reward_model import pad


@dataclass
class EncodedRanking:
    sequences: list[list[int]]
    """Token ids of each completion (with its prompt), K of them."""
    pairs: list[tuple[int, int, int]]
    """(chosen_index, rejected_index, tier_gap) into ``sequences``."""
    completion_ids: list[int]
    prompt_id: int = 0
    """Which prompt it ranks: held-out figures count prompts, and their interval resamples them."""


def encode_rankings(tokenizer, rankings: Sequence[Ranking], max_length: int) -> list[EncodedRanking]:
    return [
        EncodedRanking(
            sequences=[encode(tokenizer, r.prompt, text, max_length) for text in r.completions],
            pairs=list(r.pairs),
            completion_ids=list(r.completion_ids),
            prompt_id=r.prompt_id,
        )
        for r in rankings
    ]


def collate(rankings: Sequence[EncodedRanking], pad_token_id: int, ranking_weighted: bool) -> dict:
    """Flatten the rankings' completions into one (N = sum K_i, T) batch; pairs index into its rows."""
    sequences, chosen, rejected, gaps, weights = [], [], [], [], []
    for ranking in rankings:
        offset = len(sequences)
        sequences.extend(ranking.sequences)
        for c, r, gap in ranking.pairs:
            chosen.append(offset + c)
            rejected.append(offset + r)
            gaps.append(float(gap))
            weights.append(1.0 / len(ranking.pairs) if ranking_weighted else 1.0)
    input_ids, attention_mask = pad(sequences, pad_token_id)
    return {
        "input_ids": input_ids,  # (N, T)
        "attention_mask": attention_mask,  # (N, T)
        "chosen": torch.tensor(chosen, dtype=torch.long),  # (P,) rows of the chosen completions
        "rejected": torch.tensor(rejected, dtype=torch.long),  # (P,)
        "tier_gap": torch.tensor(gaps),  # (P,) rejected_tier - chosen_tier
        "pair_weight": torch.tensor(weights),  # (P,)
    }


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    tier_gap: torch.Tensor | None = None,
    margin_scale: float = 0.0,
    weights: torch.Tensor | None = None,
    rewards: torch.Tensor | None = None,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the pairs (InstructGPT eq. 1, TRL's RewardTrainer):

        loss = mean_p[-logsigmoid(r_chosen - r_rejected - margin_scale * tier_gap)] + center_coef * mean(r)^2

    ``weights`` turns the mean into sum(w * l) / sum(w); ``rewards`` are the batch's completions' rewards
    (for the centering term).
    """
    margin = margin_scale * tier_gap if margin_scale else 0.0
    per_pair = -F.logsigmoid(r_chosen - r_rejected - margin)  # (P,)
    loss = per_pair.mean() if weights is None else (weights * per_pair).sum() / weights.sum()
    if center_coef:
        loss = loss + center_coef * rewards.mean() ** 2
    return loss
