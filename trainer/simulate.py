"""`preflab simulate`: simulated labelers that rank a project's tasks through the HTTP API, for dry runs.

    preflab simulate --server URL --token ADMIN_TOKEN --project ID \\
        (--scorer module:function | --reward-model ID [--data-dir DATA_DIR]) \\
        [--labelers 3] [--noise 1.0] [--tie-margin 0] [--random-labelers 1] [--fast-labelers 0]

Each simulated labeler is a real `labeler` account (created with the admin token, named
``<prefix>-<run>-<n>``) that asks ``GET /tasks/next`` and answers ``POST /assignments/{id}/ranking``,
exactly as a person in the browser would; the labelers take turns until none of them is given a task.

How a careful labeler ranks (Plackett-Luce, which is Bradley-Terry on every pair): completion i gets
the utility ``score_i / noise + Gumbel noise`` and the completions are ordered by it, best first, so
``P(i above j) = sigmoid((score_i - score_j) / noise)``; ``--noise 0`` ranks by score exactly. With
``--tie-margin t``, neighbours in that order whose scores differ by less than t are tied. A random
labeler orders the completions uniformly at random; a fast labeler submits them in the order shown,
0.3 s after the task appeared (what ``min_seconds`` rules are for).

The scorer is either a Python function ``module:function(prompt_messages, completion_text) -> float``
(for a stated synthetic preference) or a registered reward model, read from the artifact store.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import math
import os
import random
import secrets
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.client import ApiClient
from trainer.data import Chat

Scorer = Callable[[Chat, str], float]
FAST_SECONDS = 0.3


@dataclass
class SimulatedLabeler:
    name: str
    api: ApiClient
    kind: str  # "careful", "random" or "fast"
    rng: random.Random
    done: bool = False
    rankings: int = 0


def rank(scores: Sequence[float], *, noise: float, tie_margin: float, rng: random.Random) -> list[list[int]]:
    """Tiers of indices into ``scores``, best first, drawn as described in the module docstring."""
    if noise < 0 or tie_margin < 0:
        raise ValueError("noise and tie_margin must be >= 0")

    def utility(i: int) -> float:
        if noise == 0:
            return scores[i]
        gumbel = -math.log(-math.log(rng.random() or 1e-300))
        return scores[i] / noise + gumbel

    order = sorted(range(len(scores)), key=utility, reverse=True)
    tiers = [[order[0]]]
    for previous, index in itertools.pairwise(order):
        if abs(scores[index] - scores[previous]) < tie_margin:
            tiers[-1].append(index)
        else:
            tiers.append([index])
    return tiers


def load_scorer(spec: str) -> Scorer:
    """``"package.module:function"`` → that function."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"--scorer must be module:function, got {spec!r}")
    return getattr(importlib.import_module(module_name), function_name)


def reward_model_scorer(admin: ApiClient, model_id: int, data_dir: Path) -> Scorer:
    """Score with a registered reward model, loaded from this machine's copy of the artifact store."""
    import torch

    from trainer.reward_model import RewardScorer

    version = admin.request("GET", f"/models/{model_id}").json()
    if version["kind"] != "reward":
        raise ValueError(f"model {model_id} is a {version['kind']} model, not a reward model")
    directory = (data_dir / "artifacts" / version["artifact"]).resolve()
    scorer = RewardScorer(directory, torch.device("cpu"), max_length=None)
    return lambda prompt, text: float(scorer([prompt], [text])[0])


def make_labelers(
    admin: ApiClient, *, count: int, random_count: int, fast_count: int, prefix: str, seed: int
) -> list[SimulatedLabeler]:
    """Create the labeler accounts, each with its own token: careful ones first, then random, then fast."""
    if random_count + fast_count > count:
        raise ValueError("--random-labelers plus --fast-labelers cannot exceed --labelers")
    run = secrets.token_hex(3)
    kinds = (
        ["careful"] * (count - random_count - fast_count) + ["random"] * random_count + ["fast"] * fast_count
    )
    labelers = []
    for n, kind in enumerate(kinds, start=1):
        name = f"{prefix}-{run}-{n}"
        user = admin.request(
            "POST",
            "/users",
            json={"username": name, "password": secrets.token_urlsafe(16), "role": "labeler"},
        ).json()
        token = admin.request("POST", f"/users/{user['id']}/tokens").json()["token"]
        labelers.append(SimulatedLabeler(name, ApiClient(admin.server, token), kind, random.Random(seed + n)))
    return labelers


def simulate(
    labelers: list[SimulatedLabeler],
    project_id: int,
    scorer: Scorer,
    *,
    noise: float,
    tie_margin: float,
    max_rankings: int | None = None,
) -> int:
    """Let the labelers take turns until none is given a task (or ``max_rankings``); returns rankings."""
    total = 0
    while not all(labeler.done for labeler in labelers):
        for labeler in labelers:
            if labeler.done:
                continue
            if max_rankings is not None and total >= max_rankings:
                return total
            response = labeler.api.request("GET", "/tasks/next", params={"project_id": project_id})
            if response.status_code == 204:
                labeler.done = True
                continue
            task = response.json()
            tiers = _tiers_for(labeler, task, scorer, noise=noise, tie_margin=tie_margin)
            body = {
                "ranking": tiers,
                "seconds_spent": FAST_SECONDS
                if labeler.kind == "fast"
                else round(labeler.rng.uniform(20, 90), 1),
            }
            labeler.api.request("POST", f"/assignments/{task['assignment_id']}/ranking", json=body)
            labeler.rankings += 1
            total += 1
    return total


def _tiers_for(
    labeler: SimulatedLabeler, task: dict[str, Any], scorer: Scorer, *, noise: float, tie_margin: float
) -> list[list[int]]:
    ids = [c["id"] for c in task["completions"]]
    if labeler.kind == "fast":
        return [[i] for i in ids]  # the order shown, no reading
    if labeler.kind == "random":
        shuffled = ids[:]
        labeler.rng.shuffle(shuffled)
        return [[i] for i in shuffled]
    scores = [scorer(task["prompt"]["messages"], c["text"]) for c in task["completions"]]
    return [
        [ids[i] for i in tier] for tier in rank(scores, noise=noise, tie_margin=tie_margin, rng=labeler.rng)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflab simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("PREFLAB_SERVER", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PREFLAB_TOKEN"), help="an admin token")
    parser.add_argument("--project", type=int, required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--scorer", help="module:function(prompt_messages, completion_text) -> float")
    source.add_argument("--reward-model", type=int, help="id of a registered reward model")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("PREFLAB_DATA_DIR", "data")))
    parser.add_argument("--labelers", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.0, help="Bradley-Terry temperature; 0: exact")
    parser.add_argument("--tie-margin", type=float, default=0.0, help="tie neighbours closer than this")
    parser.add_argument("--random-labelers", type=int, default=0, help="of --labelers, rank at random")
    parser.add_argument("--fast-labelers", type=int, default=0, help="of --labelers, submit unread in 0.3 s")
    parser.add_argument("--max-rankings", type=int, default=None)
    parser.add_argument("--prefix", default="sim")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("an admin token is required: --token or PREFLAB_TOKEN")
    admin = ApiClient(args.server, args.token)
    scorer = (
        load_scorer(args.scorer)
        if args.scorer
        else reward_model_scorer(admin, args.reward_model, args.data_dir)
    )
    labelers = make_labelers(
        admin,
        count=args.labelers,
        random_count=args.random_labelers,
        fast_count=args.fast_labelers,
        prefix=args.prefix,
        seed=args.seed,
    )
    total = simulate(
        labelers,
        args.project,
        scorer,
        noise=args.noise,
        tie_margin=args.tie_margin,
        max_rankings=args.max_rankings,
    )
    for labeler in labelers:
        print(f"{labeler.name} ({labeler.kind}): {labeler.rankings} rankings")
    print(f"{total} rankings submitted to project {args.project}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
