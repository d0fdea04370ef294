"""A reward model's figures while it trains: the rewards of encoded rankings, the held-out loss and
accuracy (with its interval and counts), and the centring of its scores before it is saved."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from accelerate import Accelerator

from trainer.intervals import accuracy_with_interval
from trainer.reward_batches import EncodedRanking, bradley_terry_loss
from trainer.reward_model import OFFSET_KEY, pad, rewards_of, score_head


@torch.no_grad()
def rewards_of_rankings(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> list[torch.Tensor]:
    """Rewards of each ranking's completions, (K_i,) each; every process scores everything."""
    model = accelerator.unwrap_model(model)
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(data), batch_rankings):
        chunk = data[start : start + batch_rankings]
        input_ids, attention_mask = pad([s for r in chunk for s in r.sequences], pad_token_id)  # (N, T)
        with accelerator.autocast():
            rewards = rewards_of(
                model, input_ids.to(accelerator.device), attention_mask.to(accelerator.device)
            )
        out.extend(rewards.cpu().split([len(r.sequences) for r in chunk]))
    model.train(was_training)
    return out


def evaluate(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> dict[str, float]:
    """Plain Bradley-Terry loss (no margin, no centering, each pair once) and pair accuracy on the
    held-out rankings, with its 95% interval and the pair and prompt counts it was measured on
    (trainer/intervals.py), and the mean and std of their completions' rewards."""
    per_ranking = rewards_of_rankings(accelerator, model, data, pad_token_id, batch_rankings)
    r_chosen = torch.stack(
        [rewards[c] for rewards, r in zip(per_ranking, data, strict=True) for c, _, _ in r.pairs]
    )
    r_rejected = torch.stack(
        [rewards[j] for rewards, r in zip(per_ranking, data, strict=True) for _, j, _ in r.pairs]
    )
    all_rewards = torch.cat(per_ranking)
    prompt_of_pair = [r.prompt_id for r in data for _ in r.pairs]
    return {
        "loss/eval": bradley_terry_loss(r_chosen, r_rejected).item(),
        **accuracy_with_interval((r_chosen > r_rejected).tolist(), prompt_of_pair),
        "reward/mean": all_rewards.mean().item(),
        "reward/std": all_rewards.std(unbiased=False).item(),
    }


def normalise(
    accelerator: Accelerator, model, data: Sequence[EncodedRanking], pad_token_id: int, batch_rankings: int
) -> float:
    """Shift rewards so that their mean over the distinct training completions is 0; return the shift.

    A head with a bias (BERT's ``classifier``) absorbs it, so plain transformers gives centred rewards.
    A head without one (Llama's ``score``) cannot; the offset goes into ``config.preflab_reward_offset``
    and :func:`score` subtracts it.
    """
    per_ranking = rewards_of_rankings(accelerator, model, data, pad_token_id, batch_rankings)
    by_completion = {}
    for rewards, ranking in zip(per_ranking, data, strict=True):
        for completion_id, reward in zip(ranking.completion_ids, rewards.tolist(), strict=True):
            by_completion.setdefault(completion_id, reward)
    offset = sum(by_completion.values()) / len(by_completion)
    _, head = score_head(model)
    if head.bias is not None:
        with torch.no_grad():
            head.bias -= offset
        model.config.update({OFFSET_KEY: 0.0})
    else:
        model.config.update({OFFSET_KEY: offset})
    return offset
