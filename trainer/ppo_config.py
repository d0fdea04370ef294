"""A PPO run's settings (``PPOConfig``, recorded in checkpoints and ``preflab.json``) and its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    min_kl_coef: float | None = None
    """The adaptive controller never lowers beta below this; None: ``kl_coef`` (anti-windup, see
    ``AdaptiveKLController``); 0: the plain controller of Ziegler et al."""
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
    reward_label: int | None = None
    """A classifier brought from outside with several outputs: the label whose log-odds is the reward."""
    reward_input: str = "chat"
    """What the reward model reads: "chat" (prompt and completion, as PrefLab trains them) or
    "completion" (the completion alone, as an outside classifier was trained to)."""
    reward_name: str = "reward model"
    """The reward model's curve on the run page when several rewards are mixed."""
    reward_weight: float = 1.0
    """The reward model's weight in a mix (``extra_rewards``); unused alone."""
    extra_rewards: list[dict] = field(default_factory=list)
    """Further rewards mixed in: ``{"directory", "weight", "name", "label", "reads"}`` each. With any, every
    reward is standardised against the starting policy's scores and the weighted sum is the reward
    (trainer/reward_mix.py)."""
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
