"""Fine-tune the policy against a reward model with PPO (RLHF, Ziegler et al. 2019 / InstructGPT).

    result = train_ppo(PPOConfig(reward_model="out/rm"), prompts, Path("out/ppo"))

The loop follows "The N Implementation Details of RLHF with PPO" (Huang et al., 2024); comments tagged
``[Huang §n]`` name the detail a line implements (numbering of docs/ppo.md). One step, top to bottom:

1. Pick ``batch_size`` prompts (a seeded permutation per pass over the prompts, so resume is exact).
2. Sample one completion per prompt from the policy (left padding, attention mask, temperature, top_p);
   the policy's log-probs and entropies of the sampled tokens come from the sampling's own logits.
3. Forward reference and value model over prompt + completion: the reference's log-probs of the sampled
   tokens, values; tokens after the first EOS are masked out.
4. Compute rewards: decode the completion, re-encode it with the REWARD MODEL's tokenizer and template,
   score it; completions without EOS score ``missing_eos_penalty`` less; per-token reward is
   ``-beta * (logp - logp_ref)`` plus the score on the last token.
5. GAE advantages and returns (gamma, lambda), advantages whitened.
6. ``ppo_epochs`` passes over shuffled minibatches: clipped policy loss + ``vf_coef`` * clipped value loss.
7. Update beta (adaptive KL controller) and emit metrics; samples, checkpoints, stop conditions.

At the end the policy is saved as a Hugging Face directory (safetensors, tokenizer, ``preflab.json``).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, StoppingCriteriaList

from trainer.data import Chat
from trainer.optim import fused_where_supported
from trainer.policy import load_policy, resolve_model_dir
from trainer.ppo_guards import BestSnapshot, kl_budget_of, kl_ceiling_of, stop_reason
from trainer.reward import OFFSET_KEY, PREFLAB_JSON, load_reward_model, pad, rewards_of, score_head
from trainer.reward_data import encode
from trainer.sampling import StepCallback, StepReporter

log = logging.getLogger("preflab.ppo")

CHECKPOINT_DIR = "checkpoint"
TRAINER_STATE = "trainer_state.json"
RESUME_IGNORED_FIELDS = {
    "steps",
    "log_every",
    "checkpoint_every",
    "sample_every",
    "num_samples",
    "target_reward",
    "kl_ceiling",
    "min_entropy",
    "eval_every",
}
"""Config fields that may change between a run and its resumption without invalidating the checkpoint."""


@dataclass
class PPOConfig:
    """Everything a PPO run depends on; recorded in checkpoints and in ``preflab.json``.

    Defaults suit the bundled 135M policy on a CPU: small batches, short completions.
    """

    reward_model: str = ""
    """Directory of a reward model saved by ``trainer.reward.train_reward_model`` (or any HF sequence
    classifier with one output)."""
    policy: str = "default"
    """Policy spec: ``"default"`` (SmolLM2-135M-Instruct) or a local Hugging Face causal-LM directory."""
    cache_dir: str = "~/.cache/preflab"
    """Where ``"default"`` is converted from GGUF once (see ``trainer.policy.resolve_model_dir``)."""
    steps: int = 100
    """PPO steps (one rollout batch + its updates each)."""
    batch_size: int = 8
    """Prompts (= completions) per rollout."""
    minibatch_size: int = 4
    """Completions per optimizer step inside the PPO epochs; must divide ``batch_size``."""
    ppo_epochs: int = 4
    """Passes over each rollout batch."""
    max_new_tokens: int = 48
    """Completion length cap; a completion that reaches it without EOS is 'missing EOS'."""
    learning_rate: float = 2e-5
    """Adam learning rate for policy and value model (one optimizer, joint loss)."""
    kl_coef: float = 0.05
    """Initial beta, the weight of the per-token KL penalty."""
    target_kl: float | None = 6.0
    """Target KL (nats per completion) for the adaptive controller; None keeps beta fixed at ``kl_coef``."""
    kl_horizon: int | None = None
    """Horizon of the adaptive controller (Ziegler et al.): larger = slower beta changes. None: a tenth
    of the run's completions (see :func:`kl_horizon_for`), so beta can move about sevenfold in one run;
    with a fixed 10,000 it hardly moved in a CPU run of a few hundred completions and KL overshot."""
    seed: int = 0
    """Seeds prompts order, sampling and minibatch shuffles; step ``s`` reseeds with ``seed + s``."""
    temperature: float = 0.7
    """Sampling temperature; the training forward divides logits by it too, so logprobs match."""
    top_p: float = 1.0
    """Nucleus sampling; values < 1 make the sampler differ from the policy the loss assumes."""
    cliprange: float = 0.2
    """PPO ratio clip epsilon for the policy loss."""
    cliprange_value: float = 0.2
    """Clip of the value prediction around the rollout's value."""
    vf_coef: float = 0.1
    """Weight of the value loss in the joint loss."""
    gamma: float = 1.0
    """Discount factor of GAE."""
    lam: float = 0.95
    """Lambda of GAE."""
    whiten_rewards: bool = False
    """Scale the per-token rewards to unit variance over the batch (mean kept) before GAE."""
    missing_eos_penalty: float | None = None
    """Subtracted from the RM score of completions with no EOS (TRL's ``missing_eos_penalty``); None: no
    penalty. Subtracted, not substituted: when nearly every completion runs to ``max_new_tokens`` (the
    bundled model on open questions under 128 tokens), a substituted constant left PPO no signal at all."""
    max_prompt_tokens: int = 256
    """Longer prompts (in policy tokens) are dropped, with a warning."""
    reward_max_length: int | None = None
    """Reward-model input cap; None: the ``max_length`` in the RM's preflab.json, else 512."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping of policy and value model together; None: no clipping (TRL's PPO loop does not
    clip), which also skips computing the norm."""
    log_every: int = 1
    """Emit metrics every N steps."""
    checkpoint_every: int = 10
    """Save a resumable checkpoint every N steps (and when stopped by ``should_stop``)."""
    sample_every: int = 10
    """Emit ``{"samples": [...]}`` every N steps (0: never)."""
    num_samples: int = 4
    """Completions per sample report."""
    target_reward: float | None = None
    """Stop once the batch's mean RM score is >= this."""
    kl_ceiling: float | None = None
    """Stop once the batch's mean KL to the reference is >= this (nats per completion); None: twice
    ``target_kl`` (no ceiling when that is None too)."""
    min_entropy: float | None = 0.1
    """Stop once the batch's mean entropy per sampled token is below this (nats): the policy collapsed
    onto a few answers. SmolLM2-135M-Instruct starts near 1.2 at temperature 0.7. None: never."""
    eval_every: int = 5
    """Evaluate on the held-out prompts every N steps (and at the end); the best evaluation within the KL
    budget is the policy saved (see trainer/ppo_guards.py). 0: only at the end (the last is saved)."""
    eval_batch_size: int = 16
    """Prompts per generate call during evaluation."""
    lora_r: int = 0
    """LoRA rank for the policy (peft); 0 trains every weight. With LoRA the reference is the policy with
    its adapters switched off (no second copy in memory), and the saved policy has them merged in."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by ``lora_alpha / lora_r``)."""
    lora_target_modules: str = "all-linear"
    """Which layers get adapters: peft's ``"all-linear"`` (every linear layer but the output head) or a
    comma-separated list of module names (``"q_proj,v_proj"``)."""


@dataclass
class PPOResult:
    out_dir: Path
    step: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    """Last step's metrics, plus eval figures when the run finished."""
    stopped: bool = False
    """True when ``should_stop`` interrupted the run (checkpoint saved, no final model)."""
    stop_reason: str | None = None
    """``"steps"``, ``"target_reward"``, ``"kl_ceiling"``, ``"entropy_collapse"`` or ``"should_stop"``."""


class StepInterrupted(Exception):
    """``should_stop`` said stop in the middle of a step or an evaluation."""


def _interrupt_on(should_stop: Callable[[], bool]) -> Callable[..., None]:
    """A check to call anywhere in a step (as a ``StepCallback`` too): raises once a stop is asked for."""

    def interrupt(*_progress: int) -> None:
        if should_stop():
            raise StepInterrupted

    return interrupt


# --------------------------------------------------------------------------------------------------
# Pure pieces: rewards, whitening, GAE, losses, KL controllers
# --------------------------------------------------------------------------------------------------


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
    """The adaptive controller's horizon: the configured one, else a tenth of the run's completions.

    beta changes by a factor ``1 + e * batch / horizon`` per step with ``|e| <= 0.2``; over a run of
    ``steps * batch`` completions and this horizon, that compounds to at most ``e^2``: about 7x.
    """
    if config.kl_horizon is not None:
        return config.kl_horizon
    return max(config.batch_size, config.steps * config.batch_size // 10)


class AdaptiveKLController:
    """Ziegler et al. 2019: ``e = clip(KL / target - 1, -0.2, 0.2)``; ``beta *= 1 + e * n_steps / horizon``.

    ``KL`` is the batch's mean KL per completion, ``n_steps`` the completions it was measured on."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int) -> None:
        self.value = init_kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        proportional_error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + proportional_error * n_steps / self.horizon


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


class ValueModel(nn.Module):
    """A scalar value per position: a transformer backbone (``AutoModel``) + ``Linear(hidden, 1)``."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, input_ids, attention_mask, position_ids=None) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        ).last_hidden_state  # (B, T, H)
        return self.head(hidden).squeeze(-1)  # (B, T)


def build_value_model(policy_dir: Path, reward_dir: Path, policy_tokenizer, reward_tokenizer) -> ValueModel:
    """[Huang §3: value model initialised from the reward model] when the RM reads the policy's tokens (same
    vocabulary and architecture); otherwise from the policy's backbone with a zero head."""
    policy_type = AutoConfig.from_pretrained(policy_dir, local_files_only=True).model_type
    reward_type = AutoConfig.from_pretrained(reward_dir, local_files_only=True).model_type
    if policy_type == reward_type and policy_tokenizer.get_vocab() == reward_tokenizer.get_vocab():
        _, rm = load_reward_model(reward_dir)
        _, rm_head = score_head(rm)
        backbone = AutoModel.from_pretrained(reward_dir, local_files_only=True)
        head = nn.Linear(rm_head.in_features, 1)
        with torch.no_grad():
            head.weight.copy_(rm_head.weight)
            head.bias.copy_(rm_head.bias if rm_head.bias is not None else torch.zeros(1))
        log.info("value model initialised from the reward model")
    else:
        backbone = AutoModel.from_pretrained(policy_dir, local_files_only=True)
        head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        log.info("value model initialised from the policy (reward model has another tokenizer or arch)")
    return ValueModel(backbone, head)


def add_lora(policy: nn.Module, config: PPOConfig) -> nn.Module:
    """Wrap the policy with LoRA adapters (peft): only they train. Imported here: peft is optional."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ImportError("lora_r > 0 needs peft: pip install peft (or preflab[trainer])") from exc
    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,  # [Huang §2: dropout off]
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(policy, lora)


def disable_dropout(model: nn.Module) -> None:
    """[Huang §2: dropout off] so that logprobs of the rollout and of the update agree."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float, *, entropy: bool = True):
    """Log-probs of ``tokens`` (...,) under ``logits`` (..., V) scaled by the temperature [Huang §7], and
    their distributions' entropies when asked for (None otherwise). A logsumexp normalises the gathered
    logit instead of a full log-softmax; the entropy costs another pass over the vocabulary."""
    logits = logits.float() / temperature
    normaliser = torch.logsumexp(logits, dim=-1)
    logprobs = torch.gather(logits, -1, tokens.unsqueeze(-1)).squeeze(-1) - normaliser
    if not entropy:
        return logprobs, None
    return logprobs, normaliser - (F.softmax(logits, dim=-1) * logits).sum(-1)


def forward_logprobs(
    model, input_ids, attention_mask, response_ids, temperature: float, *, entropy: bool = False
):
    """Log-probs (B, R) of the completion tokens, which are the last R of input_ids, and their
    entropies (B, R) when asked for (None otherwise).

    Only the R + 1 last positions get logits (``logits_to_keep``): the vocabulary projection of the
    prompt's positions, which nothing uses, is most of a forward's cost for a small model with a large
    vocabulary (SmolLM2: 49k).
    """
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # [Huang §6: positions skip left pads]
    length = response_ids.shape[1]
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        logits_to_keep=length + 1,
    ).logits
    return token_logprobs(logits[:, -length - 1 : -1], response_ids, temperature, entropy=entropy)  # (B, R)


def forward_values(value_model, input_ids, attention_mask, length: int) -> torch.Tensor:
    """Values (B, R): the value of the state before each of the last R tokens."""
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    values = value_model(input_ids, attention_mask, position_ids)  # (B, T)
    return values[:, -length - 1 : -1].float()


# --------------------------------------------------------------------------------------------------
# Rollouts: prompts → completions → scores
# --------------------------------------------------------------------------------------------------


def prompt_indices(n_prompts: int, batch_size: int, step: int, seed: int) -> list[int]:
    """The prompts of step ``step``: consecutive slices of one seeded permutation per pass."""
    out = []
    position = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(position, n_prompts)
        order = list(range(n_prompts))
        random.Random(f"{seed}-{epoch}").shuffle(order)
        out.append(order[offset])
        position += 1
    return out


@dataclass
class Rollout:
    query: torch.Tensor  # (B, P) left-padded prompt ids
    query_mask: torch.Tensor  # (B, P)
    response: torch.Tensor  # (B, R) completion ids, pad after the first EOS
    response_mask: torch.Tensor  # (B, R) 1 up to and including the first EOS
    finished: torch.Tensor  # (B,) bool: an EOS was sampled
    texts: list[str]
    logprobs: torch.Tensor  # (B, R) of the sampled tokens under the sampling policy, 0 after the EOS
    entropy: torch.Tensor  # (B, R) of its temperature-scaled distribution at each position

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query, self.response], dim=1)  # (B, P + R)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)  # (B, P + R)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    stop_ids,
    prompt_ids: list[list[int]],
    config: PPOConfig,
    device,
    on_step: StepCallback | None = None,
) -> Rollout:
    """One completion per prompt with ``model.generate`` (left padding, attention mask); ``on_step`` is
    called after every decoding step (and may raise to end the sampling).

    The log-probs and entropies of the sampled tokens come from the logits ``generate`` computed anyway
    (raw, before temperature and top-p: the full distribution scaled by the temperature, as the update's
    forward sees it), which saves the rollout a forward pass of the policy; TRL does the same. They agree
    with a fresh forward over prompt + completion to float rounding (tested).
    """
    longest = max(len(ids) for ids in prompt_ids)
    query = torch.full((len(prompt_ids), longest), tokenizer.pad_token_id, dtype=torch.long)
    query_mask = torch.zeros_like(query)
    for row, ids in enumerate(prompt_ids):
        query[row, longest - len(ids) :] = torch.tensor(ids)
        query_mask[row, longest - len(ids) :] = 1
    query, query_mask = query.to(device), query_mask.to(device)
    output = model.generate(
        input_ids=query,
        attention_mask=query_mask,
        do_sample=True,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=0,  # [Huang §7: sample from the full distribution]
        max_new_tokens=config.max_new_tokens,
        eos_token_id=list(stop_ids),
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
        stopping_criteria=StoppingCriteriaList(
            [StepReporter(on_step, config.max_new_tokens)] if on_step else []
        ),
    )
    response = output.sequences[:, longest:]  # (B, R)
    is_stop = torch.isin(response, torch.tensor(stop_ids, device=device))  # (B, R)
    finished = is_stop.any(dim=1)  # (B,)
    first_stop = torch.where(finished, is_stop.float().argmax(dim=1), response.shape[1])  # (B,)
    positions = torch.arange(response.shape[1], device=device).unsqueeze(0)  # (1, R)
    response_mask = (positions <= first_stop.unsqueeze(1)).long()  # (B, R) includes the EOS token
    response = torch.where(response_mask.bool(), response, tokenizer.pad_token_id)
    texts = [
        tokenizer.decode(row[mask.bool()], skip_special_tokens=True)
        for row, mask in zip(response, response_mask, strict=True)
    ]
    # one (B, V) slice per sampled position: normalise each on its own rather than stacking (B, R, V)
    per_position = [
        token_logprobs(logits, response[:, t], config.temperature) for t, logits in enumerate(output.logits)
    ]
    logprobs, entropy = zip(*per_position, strict=True)
    logprobs = torch.stack(logprobs, dim=1) * response_mask  # (B, R)
    entropy = torch.stack(entropy, dim=1) * response_mask  # (B, R)
    return Rollout(query, query_mask, response, response_mask, finished, texts, logprobs, entropy)


class RewardScorer:
    """The frozen reward model with ITS OWN tokenizer and template (``trainer.reward_data.encode``)."""

    def __init__(self, reward_dir: Path, device, max_length: int | None) -> None:
        self.tokenizer, self.model = load_reward_model(reward_dir)
        self.model.to(device).eval().requires_grad_(False)
        self.offset = float(getattr(self.model.config, OFFSET_KEY, 0.0) or 0.0)
        if max_length is None:
            record = reward_dir / PREFLAB_JSON
            max_length = json.loads(record.read_text())["config"]["max_length"] if record.is_file() else 512
        self.max_length = max_length
        self.device = device

    @torch.no_grad()
    def __call__(self, prompts: Sequence[Chat], completions: Sequence[str]) -> torch.Tensor:
        sequences = [
            encode(self.tokenizer, p, c, self.max_length) for p, c in zip(prompts, completions, strict=True)
        ]
        input_ids, attention_mask = pad(sequences, self.tokenizer.pad_token_id)
        scores = rewards_of(self.model, input_ids.to(self.device), attention_mask.to(self.device))
        return scores - self.offset  # (B,)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def train_ppo(
    config: PPOConfig,
    prompts: list[Chat],
    out_dir: Path | str,
    *,
    on_metrics: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    eval_prompts: list[Chat] | None = None,
) -> PPOResult:
    """Run PPO and save the policy into ``out_dir``; resume from ``out_dir/checkpoint/`` when present.

    ``on_metrics`` receives metric dicts (see docs/ppo.md) and sample reports ``{"samples": [...]}``;
    ``should_stop`` is polled between decoding steps and between optimizer steps, so a stop takes
    seconds: True saves a checkpoint and returns ``stopped=True``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    emit = on_metrics or (lambda metrics: None)
    interrupt = _interrupt_on(should_stop or (lambda: False))
    if config.batch_size % config.minibatch_size:
        raise ValueError("minibatch_size must divide batch_size")

    # 1. accelerator, seed, models: policy (trained), reference (frozen copy), value model, reward model
    accelerator = Accelerator()
    device = accelerator.device
    set_seed(config.seed)
    policy_dir = resolve_model_dir(config.policy, Path(config.cache_dir).expanduser())
    reward_dir = Path(config.reward_model).resolve()
    loaded = load_policy(policy_dir, device="cpu", dtype=torch.float32)
    tokenizer, stop_ids, policy = loaded.tokenizer, loaded.stop_token_ids, loaded.model
    if config.lora_r:
        policy, reference = add_lora(policy, config), None  # the reference: adapters switched off
    else:
        reference = AutoModelForCausalLM.from_pretrained(
            policy_dir, local_files_only=True, dtype=torch.float32
        )
        reference.to(device).eval().requires_grad_(False)
    scorer = RewardScorer(reward_dir, device, config.reward_max_length)
    value_model = build_value_model(policy_dir, reward_dir, tokenizer, scorer.tokenizer)
    for model in (policy, reference, value_model):
        if model is not None:
            disable_dropout(model)

    # 2. prompts rendered with the policy's chat template; too long ones dropped
    def render(chats: Sequence[Chat]) -> list[tuple[Chat, list[int]]]:
        kept = []
        for chat in chats:
            text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) <= config.max_prompt_tokens:
                kept.append((chat, ids))
        if len(kept) < len(chats):
            log.warning(
                "dropped %d prompts longer than %d tokens", len(chats) - len(kept), config.max_prompt_tokens
            )
        return kept

    train_set = render(prompts)
    eval_set = render(eval_prompts or [])
    if not train_set:
        raise ValueError("no prompts to train on")

    # 3. one (fused) Adam over policy and value model [Huang §10: Adam eps 1e-5], prepared by accelerate
    trained = [p for p in (*policy.parameters(), *value_model.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(
        trained, lr=config.learning_rate, eps=1e-5, fused=fused_where_supported(device)
    )
    policy, value_model, optimizer = accelerator.prepare(policy, value_model, optimizer)

    @contextmanager
    def as_reference():
        """The frozen starting policy: its own copy, or (LoRA) the policy with its adapters switched off."""
        if reference is not None:
            yield reference
            return
        peft_policy = accelerator.unwrap_model(policy)
        with peft_policy.disable_adapter():
            yield peft_policy

    def reference_logprobs(input_ids, attention_mask, response) -> torch.Tensor:
        with as_reference() as ref:
            return forward_logprobs(ref, input_ids, attention_mask, response, config.temperature)[0]

    kl_ctl = (
        AdaptiveKLController(config.kl_coef, config.target_kl, kl_horizon_for(config))
        if config.target_kl is not None
        else FixedKLController(config.kl_coef)
    )

    # 4. resume
    step = _resume(accelerator, out_dir / CHECKPOINT_DIR, config, kl_ctl)

    def save_checkpoint() -> None:
        _save_checkpoint(accelerator, out_dir / CHECKPOINT_DIR, config, step, kl_ctl.value)

    def generate(model, batch: Sequence[tuple[Chat, list[int]]]) -> Rollout:
        return sample(
            accelerator.unwrap_model(model),
            tokenizer,
            stop_ids,
            [ids for _, ids in batch],
            config,
            device,
            on_step=interrupt,
        )

    def generate_and_score(model, batch: Sequence[tuple[Chat, list[int]]]) -> tuple[Rollout, torch.Tensor]:
        rollout = generate(model, batch)
        raw_scores = scorer([chat for chat, _ in batch], rollout.texts)  # (B,)
        return rollout, raw_scores

    metrics: dict[str, float] = {}
    try:
        # 5. evaluation of the starting policy (= the reference)
        eval_metrics: dict[str, float] = {}
        if eval_set:
            set_seed(config.seed + 1_000_003)
            with as_reference() as ref:
                eval_metrics["eval/reward_before"] = _evaluate(
                    generate_and_score, ref, None, eval_set, config
                )[0]
            emit({"step": step, **eval_metrics})

        stop = "steps"
        ceiling = kl_ceiling_of(config.kl_ceiling, config.target_kl)
        best = BestSnapshot(kl_budget=kl_budget_of(config.target_kl, ceiling))

        def evaluate_policy() -> tuple[float, float]:
            set_seed(config.seed + 1_000_003)  # every evaluation samples the held-out prompts alike
            return _evaluate(generate_and_score, policy, reference_logprobs, eval_set, config)

        while step < config.steps:
            interrupt()
            started = time.monotonic()
            set_seed(config.seed + step)  # the step's sampling and shuffles depend on (seed, step) only

            # 1. pick the step's prompts
            batch = [
                train_set[i] for i in prompt_indices(len(train_set), config.batch_size, step, config.seed)
            ]

            # 2. sample one completion per prompt and score it with the reward model
            policy.eval()
            value_model.eval()
            rollout = generate(policy, batch)
            generated = time.monotonic()
            raw_scores = scorer([chat for chat, _ in batch], rollout.texts)  # (B,)
            input_ids, attention_mask = rollout.input_ids, rollout.attention_mask  # (B, P + R)
            mask = rollout.response_mask.float()  # (B, R)
            length = rollout.response.shape[1]

            # 3. logprobs of the sampled tokens under the reference (the policy's came with the sample);
            #    values
            logprobs, entropy = rollout.logprobs, rollout.entropy  # (B, R)
            with torch.no_grad():
                ref_logprobs = (
                    reference_logprobs(input_ids, attention_mask, rollout.response) * mask
                )  # (B, R)
                values = forward_values(value_model, input_ids, attention_mask, length) * mask  # (B, R)

            # 4. compute rewards: EOS penalty, per-token KL penalty + score on the last token
            scores = apply_missing_eos_penalty(
                raw_scores, rollout.finished, config.missing_eos_penalty
            )  # (B,)
            rewards, kl = compute_rewards(scores, logprobs, ref_logprobs, mask, kl_ctl.value)  # (B, R)
            if config.whiten_rewards:
                rewards = whiten(rewards, mask, shift_mean=False)  # [Huang §11: reward scaling]

            # 5. advantages and returns; advantages whitened [Huang §12: advantage normalisation]
            advantages, returns = compute_gae(rewards, values, mask, config.gamma, config.lam)  # (B, R)
            advantages = whiten(advantages, mask)
            scored = time.monotonic()

            # 6. PPO epochs over shuffled minibatches
            policy.train()
            value_model.train()
            stats = torch.zeros(4)  # policy loss, value loss, clipfrac, minibatches
            for _ in range(config.ppo_epochs):
                order = torch.randperm(config.batch_size)
                for start in range(0, config.batch_size, config.minibatch_size):
                    rows = order[start : start + config.minibatch_size].to(device)
                    mb_ids, mb_attn, mb_mask = input_ids[rows], attention_mask[rows], mask[rows]
                    new_logprobs, _ = forward_logprobs(
                        policy, mb_ids, mb_attn, rollout.response[rows], config.temperature
                    )  # (b, R)
                    vpred = forward_values(value_model, mb_ids, mb_attn, length)  # (b, R)
                    pg_loss, vf_loss, clipfrac = ppo_losses(
                        new_logprobs,
                        logprobs[rows],
                        advantages[rows],
                        vpred,
                        values[rows],
                        returns[rows],
                        mb_mask,
                        config.cliprange,
                        config.cliprange_value,
                    )
                    loss = pg_loss + config.vf_coef * vf_loss
                    interrupt()  # before the update: a stop never leaves a half-applied optimizer step
                    optimizer.zero_grad()
                    accelerator.backward(loss)
                    if config.max_grad_norm is not None:
                        accelerator.clip_grad_norm_(trained, config.max_grad_norm)
                    optimizer.step()
                    stats += torch.tensor([pg_loss.item(), vf_loss.item(), clipfrac.item(), 1.0])
            updated = time.monotonic()

            # 7. adaptive KL: beta toward target_kl [Ziegler et al. 2019]; metrics
            mean_kl = kl.sum(dim=1).mean().item()  # nats per completion
            beta_used = kl_ctl.value
            kl_ctl.update(mean_kl, config.batch_size)
            step += 1
            elapsed = time.monotonic() - started
            metrics = {
                "step": step,
                "reward/score": raw_scores.mean().item(),
                "reward/score_penalised": scores.mean().item(),
                "reward/missing_eos": 1.0 - rollout.finished.float().mean().item(),
                "objective/kl": mean_kl,
                "objective/entropy": (entropy * mask).sum(dim=1).mean().item(),
                "objective/entropy_per_token": ((entropy * mask).sum() / mask.sum().clamp(min=1)).item(),
                "loss/policy": (stats[0] / stats[3]).item(),
                "loss/value": (stats[1] / stats[3]).item(),
                "policy/clipfrac": (stats[2] / stats[3]).item(),
                "objective/beta": beta_used,
                "response/length": mask.sum(dim=1).mean().item(),
                "time/tokens_per_second": mask.sum().item() / max(elapsed, 1e-9),
                # wall seconds of the step's phases: 2. sampling; RM + 3.-5. forwards, rewards, GAE;
                # 6. PPO epochs (on a GPU, kernels still queued at a boundary are counted in the next phase)
                "time/generation": generated - started,
                "time/scoring": scored - generated,
                "time/update": updated - scored,
            }
            if step % config.log_every == 0 or step == config.steps:
                emit(dict(metrics))
            if config.sample_every and step % config.sample_every == 0:
                emit(
                    {
                        "step": step,
                        "samples": [
                            {"prompt": chat, "completion": text, "score": s}
                            for (chat, _), text, s in zip(
                                batch, rollout.texts, raw_scores.tolist(), strict=True
                            )
                        ][: config.num_samples],
                    }
                )
            if step % config.checkpoint_every == 0 and step < config.steps:
                save_checkpoint()
            if reason := stop_reason(
                metrics,
                target_reward=config.target_reward,
                kl_ceiling=ceiling,
                min_entropy=config.min_entropy,
            ):
                stop = reason
                log.info("step %d: stopping (%s)", step, reason)
                break
            if eval_set and config.eval_every and step % config.eval_every == 0 and step < config.steps:
                policy.eval()
                reward_now, kl_now = evaluate_policy()
                best.consider(accelerator.unwrap_model(policy), step=step, reward=reward_now, kl=kl_now)
                emit({"step": step, "eval/reward": reward_now, "eval/kl": kl_now})

        # 8. evaluate the trained policy; keep the best evaluation within the KL budget; save it in Hugging
        #    Face format with preflab.json
        policy.eval()
        if eval_set:
            reward_last, kl_last = evaluate_policy()
            best.consider(accelerator.unwrap_model(policy), step=step, reward=reward_last, kl=kl_last)
            if best.step != step:
                log.info(
                    "saving the policy of step %d (best held-out reward within the KL budget)", best.step
                )
            eval_metrics |= {"eval/reward_last": reward_last, "eval/kl_last": kl_last} | best.summary(step)
            emit({"step": step, "eval/reward": reward_last, "eval/kl": kl_last, **eval_metrics})
    except StepInterrupted:
        # Between decoding steps or optimizer steps: the updates made so far in this step are kept, and
        # the resumed run samples this step again from them (a valid run, not a bit-identical one).
        save_checkpoint()
        log.info("stopped during step %d; checkpoint saved", step + 1)
        return PPOResult(out_dir=out_dir, step=step, metrics=metrics, stopped=True, stop_reason="should_stop")
    save_checkpoint()  # a re-run with more steps continues from here (from the last step, not the best)
    if eval_set and best.step != step:
        best.restore_into(accelerator.unwrap_model(policy))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(policy)
        if config.lora_r:  # adapters merged in: a plain causal LM that transformers and vLLM load as is
            unwrapped = unwrapped.merge_and_unload()
        unwrapped.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        record = {
            "kind": "ppo",
            "config": asdict(config),
            "policy_dir": str(policy_dir),
            "reward_model_dir": str(reward_dir),
            "step": step,
            "stop_reason": stop,
            "beta": kl_ctl.value,
            "metrics": metrics,
            "eval": eval_metrics,
            "prompts": {"train": len(train_set), "eval": len(eval_set)},
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out_dir / PREFLAB_JSON).write_text(json.dumps(record, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return PPOResult(out_dir=out_dir, step=step, metrics=metrics | eval_metrics, stop_reason=stop)


@torch.no_grad()
def _evaluate(
    generate_and_score, model, reference_logprobs, eval_set, config: PPOConfig
) -> tuple[float, float]:
    """Mean RM score (raw, no EOS penalty) and mean KL to the reference (nats per completion);
    ``reference_logprobs`` None: ``model`` is the reference (KL 0)."""
    scores, kls = [], []
    for start in range(0, len(eval_set), config.eval_batch_size):
        batch = eval_set[start : start + config.eval_batch_size]
        rollout, raw_scores = generate_and_score(model, batch)
        scores.extend(raw_scores.tolist())
        if reference_logprobs is None:  # the model is the reference: nothing to compare
            kls.extend([0.0] * len(batch))
            continue
        ids, attn, mask = rollout.input_ids, rollout.attention_mask, rollout.response_mask.float()
        ref_logp = reference_logprobs(ids, attn, rollout.response)
        kls.extend(((rollout.logprobs - ref_logp) * mask).sum(dim=1).tolist())
    return sum(scores) / len(scores), sum(kls) / len(kls)


# --------------------------------------------------------------------------------------------------
# Checkpoints: policy, value model, optimizer, RNG (accelerate) + step, beta, config
# --------------------------------------------------------------------------------------------------


def _save_checkpoint(
    accelerator: Accelerator, directory: Path, config: PPOConfig, step: int, beta: float
) -> None:
    """Written next to the old checkpoint and swapped in, so a crash mid-save keeps the previous one."""
    staging = directory.with_name(directory.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging), safe_serialization=False)  # tied embeddings: plain torch files
    if accelerator.is_main_process:
        state = {"step": step, "beta": beta, "config": asdict(config)}
        (staging / TRAINER_STATE).write_text(json.dumps(state, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)
    accelerator.wait_for_everyone()


def _resume(accelerator: Accelerator, directory: Path, config: PPOConfig, kl_ctl) -> int:
    """Load the checkpoint when it belongs to this run (same config); return the step to continue from."""
    state_file = directory / TRAINER_STATE
    if not state_file.is_file():
        return 0
    saved = json.loads(state_file.read_text())
    ours = {k: v for k, v in asdict(config).items() if k not in RESUME_IGNORED_FIELDS}
    theirs = {k: v for k, v in saved["config"].items() if k not in RESUME_IGNORED_FIELDS}
    if ours != theirs:
        log.warning("checkpoint in %s is for another config; starting afresh", directory)
        return 0
    accelerator.load_state(str(directory))
    kl_ctl.value = saved["beta"]
    log.info("resumed from %s at step %d (beta %.4g)", directory, saved["step"], saved["beta"])
    return int(saved["step"])


__all__ = [
    "AdaptiveKLController",
    "FixedKLController",
    "PPOConfig",
    "PPOResult",
    "ValueModel",
    "apply_missing_eos_penalty",
    "compute_gae",
    "compute_rewards",
    "ppo_losses",
    "train_ppo",
    "whiten",
]
