"""A trained model directory explains itself and loads anywhere (trainer/model_card.py, model_files.py):
the reward model scores the same through its own card's snippet, a text-classification pipeline and
PrefLab; a policy samples as the run did; the record names no local path; files are readable."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.trainer.test_reward import make_pairs, tiny_config  # noqa: E402
from trainer.model_card import finish_trained_model  # noqa: E402
from trainer.reward import train_reward_model  # noqa: E402
from trainer.reward_model import score  # noqa: E402

LONG_PROMPT = [{"role": "user", "content": " ".join(["what is the capital of france"] * 12)}]
SHORT_PROMPT = [{"role": "user", "content": "why is the sky blue"}]
INPUTS = [
    (SHORT_PROMPT, "because of rayleigh scattering good"),
    (LONG_PROMPT, "paris is the capital good good"),  # the prompt is cut on the left
    (SHORT_PROMPT, " ".join(["the sea is blue"] * 20)),  # the completion alone is longer than max_length
    (
        [*SHORT_PROMPT, {"role": "assistant", "content": "sunlight"}, {"role": "user", "content": "and"}],
        "the waves roll over the sand bad",
    ),
]


def card_parts(directory: Path) -> tuple[dict, list[str]]:
    """The card's front matter (JSON, which is YAML) and its Python code blocks."""
    text = (directory / "README.md").read_text()
    front = json.loads(text.split("---\n")[1])
    return front, re.findall(r"```python\n(.*?)```", text, flags=re.S)


def absolute_paths(value) -> list[str]:
    if isinstance(value, dict):
        return [p for item in value.values() for p in absolute_paths(item)]
    if isinstance(value, list):
        return [p for item in value for p in absolute_paths(item)]
    return [value] if isinstance(value, str) and value.startswith("/") else []


@pytest.fixture
def private_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_reward_models_card_snippet_and_pipeline_score_as_preflab(tiny_bert_dir, tmp_path, private_umask):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    store = tmp_path / "artifacts"
    out_dir = store / "reward" / "job-7"
    train_reward_model(tiny_config(tiny_bert_dir, epochs=2), make_pairs(n_prompts=12, k=3), out_dir)
    before = score(out_dir, INPUTS)
    (out_dir / "model.safetensors").chmod(0o600)  # as safetensors writes it

    config = {"base_model": str(tiny_bert_dir), "max_length": 48}
    finish_trained_model(
        out_dir, kind="reward", job_id=7, project_id=3, config=config, roots={"artifact": store}
    )

    # PrefLab reads the saved template exactly as it read the backbone without one
    assert score(out_dir, INPUTS) == pytest.approx(before, abs=1e-6)
    front, snippets = card_parts(out_dir)
    assert front["pipeline_tag"] == "text-classification" and front["preflab"]["job"] == {
        "id": 7,
        "project_id": 3,
    }
    assert front["preflab"]["held_out"]["eval/prompts"] == 3
    namespace: dict = {}
    exec(snippets[0].replace('directory = "."', f'directory = "{out_dir}"'), namespace)
    assert [namespace["score"](p, c) for p, c in INPUTS] == pytest.approx(before, abs=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForSequenceClassification.from_pretrained(out_dir)
    assert tokenizer.truncation_side == "left" and model.config.problem_type == "regression"
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    chat = [*INPUTS[0][0], {"role": "assistant", "content": INPUTS[0][1]}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    assert classify(text, add_special_tokens=False)[0]["score"] == pytest.approx(before[0], abs=1e-5)

    record = json.loads((out_dir / "preflab.json").read_text())
    assert absolute_paths(record) == [], "lineage and config name models, not this machine's paths"
    assert record["lineage"][0]["role"] == "backbone"
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in out_dir.iterdir() if path.is_file())


def test_a_policy_samples_as_the_run_did_and_loads_on_transformers_4(make_tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out_dir = tmp_path / "artifacts" / "sft" / "job-9"
    shutil.copytree(make_tiny_model_dir(), out_dir)
    record = {
        "kind": "sft",
        "config": {"policy": "/somewhere/cache/models/base", "learning_rate": 1e-5},
        "policy_dir": "/somewhere/cache/models/base",
        "metrics": {"loss/eval_before": 3.2, "loss/eval": 2.5},
        "data": {"source": {"project_id": 2, "export_filters": {"labelers": []}}},
    }
    (out_dir / "preflab.json").write_text(json.dumps(record))
    config = {"base_model": "model:4", "base_model_name": "sft-round-1", "temperature": 0.7, "top_p": 0.9}
    finish_trained_model(
        out_dir, kind="sft", job_id=9, project_id=2, config=config, roots={"cache": Path("/somewhere/cache")}
    )

    model = AutoModelForCausalLM.from_pretrained(out_dir)
    sampling = model.generation_config
    assert (sampling.do_sample, sampling.temperature, sampling.top_p) == (True, 0.7, 0.9)
    saved = json.loads((out_dir / "config.json").read_text())
    assert saved["rope_theta"] == saved["rope_parameters"]["rope_theta"], "where transformers 4.x reads it"
    tokenizer_class = json.loads((out_dir / "tokenizer_config.json").read_text())["tokenizer_class"]
    assert tokenizer_class != "TokenizersBackend", "a class transformers 4.x has"

    written = json.loads((out_dir / "preflab.json").read_text())
    assert written["policy_dir"] == "cache:models/base" and absolute_paths(written) == []
    assert written["lineage"][0] == {"role": "starting policy", "model": "model:4", "name": "sft-round-1"}
    front, snippets = card_parts(out_dir)
    assert front["preflab"]["held_out"] == {"loss/eval_before": 3.2, "loss/eval": 2.5}
    namespace: dict = {}
    exec(snippets[0].replace('directory = "."', f'directory = "{out_dir}"'), namespace)
    assert namespace["output"].shape[1] > namespace["inputs"]["input_ids"].shape[1], "it generated"
