"""Do PrefLab's model directories mean the same on another transformers? Run it under each version:

    .venv/bin/python bench/portable_models.py POLICY_DIR REWARD_DIR --out /tmp/figures-5.json
    /tmp/venv457/bin/python bench/portable_models.py POLICY_DIR REWARD_DIR --compare /tmp/figures-5.json

(`/tmp/venv457`: `python3.11 -m venv /tmp/venv457 && /tmp/venv457/bin/pip install torch==2.13.0
transformers==4.57.6`; the script imports nothing of PrefLab, so it runs in such a bare environment.)

It loads the policy and the reward model with plain transformers, as a user would: the policy's
next-token logits after a chat prompt, the sampling settings its generation config holds, the reward
model's score of a chat through the chat template and through `pipeline("text-classification")`. With
``--compare`` it prints the largest difference from the figures another version saved.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    pipeline,
)

PROMPT = [{"role": "user", "content": "What is the capital of Australia?"}]
CHAT = [
    {"role": "user", "content": "Explain rain."},
    {"role": "assistant", "content": "Water falls from clouds when the drops grow heavy."},
]


def figures(policy_dir: Path, reward_dir: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    model = AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32).eval()
    ids = tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    sampling = model.generation_config
    reward_tokenizer = AutoTokenizer.from_pretrained(reward_dir)
    reward_model = AutoModelForSequenceClassification.from_pretrained(reward_dir).eval()
    encoded = reward_tokenizer.apply_chat_template(CHAT, tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        score = reward_model(**encoded).logits[0, 0].item()
    text = reward_tokenizer.apply_chat_template(CHAT, tokenize=False)
    classify = pipeline("text-classification", model=reward_model, tokenizer=reward_tokenizer)
    return {
        "transformers": transformers.__version__,
        "tokenizer_class": type(tokenizer).__name__,
        "rope_theta": getattr(model.config, "rope_theta", None) or model.config.rope_parameters["rope_theta"],
        "sampling": [sampling.do_sample, sampling.temperature, sampling.top_p],
        "logits": logits.tolist(),
        "reward": score,
        "reward_pipeline": classify(text, add_special_tokens=False)[0]["score"],
        "truncation_side": reward_tokenizer.truncation_side,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("policy", type=Path)
    parser.add_argument("reward", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args()
    mine = figures(args.policy, args.reward)
    print(json.dumps({key: value for key, value in mine.items() if key != "logits"}))
    if args.out:
        args.out.write_text(json.dumps(mine))
    if args.compare:
        theirs = json.loads(args.compare.read_text())
        gap = max(abs(a - b) for a, b in zip(mine["logits"], theirs["logits"], strict=True))
        print(
            f"transformers {mine['transformers']} against {theirs['transformers']}: largest logit difference "
            f"{gap:.3g}; reward {mine['reward']:.6f} against {theirs['reward']:.6f}; pipeline "
            f"{mine['reward_pipeline']:.6f}; sampling {mine['sampling']} against {theirs['sampling']}; "
            f"rope_theta {mine['rope_theta']} against {theirs['rope_theta']}"
        )


if __name__ == "__main__":
    main()
