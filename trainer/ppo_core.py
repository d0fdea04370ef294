"""PPO's pure pieces: rewards, whitening, GAE, the clipped losses and the KL controllers.

No models and no I/O: each function is a few lines to check against the papers (Ziegler et al. 2019;
Schulman et al. 2017; "The N Implementation Details of RLHF with PPO", Huang et al. 2024), and the tests
check them on hand-made tensors.
"""

from __future__ import annotations

import torch

from trainer.ppo_config import PPOConfig


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Zero mean (if ``shift_mean``) and unit variance over the valid tokens; masked positions stay 0."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def apply_missing_eos_penalty(scores: torch.Tensor, finished: torch.Tensor, penalty: float | None):
    """[Huang §4: the EOS trick, as TRL applies it] a completion that never ended scores ``penalty`` less;
    the reward model's ordering among unfinished completions survives."""
    if penalty is None:
        return scores
    return scores - penalty * (~finished).to(scores.dtype)


def compute_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: ``-beta * (logp - logp_ref)`` everywhere, plus the score on the last valid token.

    scores (B,), logprobs / ref_logprobs / mask (B, T) → rewards (B, T), kl (B, T) (both 0 where masked).
    """
    kl = (logprobs - ref_logprobs) * mask  # (B, T)
    rewards = -beta * kl  # (B, T)  [Huang §5: per-token KL penalty]
    last = mask.sum(dim=1).long().clamp(min=1) - 1  # (B,) index of the last completion token
    rewards[torch.arange(rewards.shape[0]), last] += scores  # [Huang §5: score on the last token]
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over completion tokens (Schulman et al. 2016).

    rewards, values, mask: (B, T). ``delta_t = r_t + gamma * V_{t+1} - V_t`` with ``V`` beyond the last
    valid token = 0; ``A_t = delta_t + gamma * lam * A_{t+1}``; returns = A + V. Masked positions get 0.
    """
    values = values * mask  # (B, T)
    rewards = rewards * mask  # (B, T)
    advantages = torch.zeros_like(rewards)  # (B, T)
    last_gae = torch.zeros_like(rewards[:, 0])  # (B,)
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(last_gae)  # (B,)
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (B,)
        last_gae = (delta + gamma * lam * last_gae) * mask[:, t]  # (B,)
        advantages[:, t] = last_gae
    returns = (advantages + values) * mask  # (B, T)
    return advantages, returns


def ppo_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    vpred: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped policy loss, clipped value loss and the clip fraction; all inputs (B, T)."""
    ratio = torch.exp(logprobs - old_logprobs)  # (B, T)
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask)  # [Huang §8: clipped surrogate]
    clipfrac = masked_mean((pg_losses_clipped > pg_losses).float(), mask)
    # [Huang §9: value clipping around the rollout's values]
    vpred_clipped = old_values + torch.clamp(vpred - old_values, -cliprange_value, cliprange_value)
    vf_losses = torch.max((vpred - returns) ** 2, (vpred_clipped - returns) ** 2)
    vf_loss = 0.5 * masked_mean(vf_losses, mask)
    return pg_loss, vf_loss, clipfrac


class FixedKLController:
    """beta stays at its initial value."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


def kl_horizon_for(config: PPOConfig) -> int:
    """The adaptive controller's horizon: the configured one, else a twentieth of the run's completions.

    beta changes by a factor ``1 + e * batch / horizon`` per step with ``|e| <= 0.2``; over a run of
    ``steps * batch`` completions and this horizon, that compounds to at most ``e^4`` (about 55x), and
    beta can double in about 7 steps once the KL passes its target. At a tenth (``e^2``, doubling in 11
    steps) the KL of a default run on the bundled policy rose past its target faster than beta followed
    (docs/benchmarks.md, issue 12, fourth measurement).
    """
    if config.kl_horizon is not None:
        return config.kl_horizon
    return max(config.batch_size, config.steps * config.batch_size // 20)


class AdaptiveKLController:
    """Ziegler et al. 2019: ``e = clip(KL / target - 1, -0.2, 0.2)``; ``beta *= 1 + e * n_steps / horizon``,
    never below ``floor``.

    ``KL`` is the batch's mean KL per completion, ``n_steps`` the completions it was measured on. The
    floor is anti-windup: a run starts at KL 0, below any target, so the plain controller lowers beta
    through the first steps (to about half in a default run) and the KL then overshoots before beta
    climbs back; with ``floor`` = the initial beta the controller only tightens."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int, floor: float = 0.0) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon
        self.floor = floor

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value = max(self.floor, self.value * (1.0 + proportional_error * n_steps / self.horizon))
