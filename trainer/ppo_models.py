"""PPO's models beside the policy: the value model (a backbone and a one-output head), LoRA adapters,
and the forward passes that give log-probs, entropies and values of sampled tokens."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel

from trainer.ppo_config import PPOConfig
from trainer.reward_model import load_reward_model, score_head

log = logging.getLogger("preflab.ppo")


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
    rm_head = None
    if policy_type == reward_type and policy_tokenizer.get_vocab() == reward_tokenizer.get_vocab():
        _, rm = load_reward_model(reward_dir, num_labels=None)
        try:
            _, rm_head = score_head(rm)
        except ValueError:  # a classifier with several outputs: its head is no value head
            rm_head = None
    if rm_head is not None:
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
        log.info(
            "value model initialised from the policy (the reward model's tokenizer, arch or head differ)"
        )
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
