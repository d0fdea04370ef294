"""What the loop learns: the whole loop through a real server, ranked by simulated labelers following
a synthetic preference that is not length (bench/preferences.py), at a given label budget.

    .venv/bin/python bench/preference_loop.py --preferences readability,second_person,structure \\
        --prompts 200 [--eval-prompts 32] [--data-dir /tmp/preflab-pref] [--out results.jsonl]

For each preference, on a fresh SQLite database (the converted default model is kept in
``DATA_DIR/cache`` between runs), as a user would with `make run`, scripted over the HTTP API:

1. a project with K = 4 and 2 rankings per prompt; ``--prompts`` first human turns of the shared HH-RLHF
   dialogues (``../shared``), completions by the bundled SmolLM2-135M-Instruct;
2. 3 simulated labelers, one of whom ranks at random (``trainer/simulate.py``): the careful two follow the
   preference with Bradley-Terry noise (``preferences.NOISE``);
3. a reward model with the API's defaults (or ``--reward-epochs``/``--reward-lr``): its held-out
   accuracy with the 95% interval and the counts it was measured on;
4. PPO with the API's defaults (``force`` when the reward model is at chance, so the run is measured
   anyway; the verdict is reported): held-out reward before/after, KL, which checkpoint, stop reason;
   or with ``--method dpo``, DPO on the same comparisons (``--dpo`` JSON, default the API's): held-out
   preference accuracy, KL to the reference, minutes;
5. a blind evaluation round on ``--eval-prompts`` fresh prompts (never ranked, never trained on: a
   project of their own), the new policy against the default, judged by the same preference without
   noise (equal scores tie): wins, ties, losses, win rate with its 95% interval.

One JSON line per preference goes to ``--out``; a table is printed at the end. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from closed_loop import Api, create_user, free_port, load_prompts, stage
from preferences import NOISE, PREFERENCES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.client import ApiClient  # noqa: E402
from trainer.simulate import make_labelers, simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preferences", default="readability,second_person,structure")
    parser.add_argument("--prompts", type=int, default=200, help="prompts ranked (the label budget)")
    parser.add_argument("--eval-prompts", type=int, default=32, help="fresh prompts of the blind round")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="the project's generation length")
    parser.add_argument("--reward-epochs", type=int, default=None, help="default: the API's")
    parser.add_argument("--reward-lr", type=float, default=None, help="default: the API's")
    parser.add_argument("--ppo", default="{}", help="JSON merged into the PPO request (default: the API's)")
    parser.add_argument(
        "--method",
        choices=["ppo", "dpo"],
        default="ppo",
        help="reward model + PPO, or DPO on the comparisons",
    )
    parser.add_argument("--dpo", default="{}", help="the DPO request as JSON (default: the API's)")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/preflab-pref"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/preflab-pref/results.jsonl"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep each preference's database from an earlier run: skip steps 1-3 (its project, rankings "
        "and newest reward model) and run PPO (or DPO) and the blind round again, to compare settings",
    )
    args = parser.parse_args()

    prompts = load_prompts(args.prompts + args.eval_prompts)
    if len(prompts) < args.prompts + args.eval_prompts:
        raise SystemExit("not enough distinct prompts")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    rows = []
    for name in args.preferences.split(","):
        row = run_one(name, prompts[: args.prompts], prompts[args.prompts :], args)
        rows.append(row)
        with args.out.open("a") as out:
            out.write(json.dumps(row) + "\n")
    header = [
        "preference",
        "prompts",
        "method",
        "RM held-out accuracy",
        "PPO reward",
        "KL",
        "minutes",
        "win rate",
    ]
    print("\n" + " | ".join(header))
    for r in rows:
        ppo = (
            f"{r['reward_before']:+.3f} -> {r['reward_after']:+.3f}"
            if r["reward_before"] is not None
            else "-"
        )
        win = f"{r['win_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        print(
            " | ".join(
                [
                    r["preference"],
                    str(r["prompts"]),
                    r["method"],
                    r["reward_model"],
                    ppo,
                    f"{r['kl_after']:.2f}",
                    f"{r['training_minutes']}",
                    win,
                ]
            )
        )


def run_one(name: str, train_prompts: list[str], fresh_prompts: list[str], args) -> dict:
    scorer = PREFERENCES[name]
    data_dir = args.data_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    reuse = args.reuse and (data_dir / "preflab.sqlite3").exists()
    if not reuse:
        for stale in ("preflab.sqlite3", "preflab.sqlite3-wal", "preflab.sqlite3-shm", "artifacts"):
            path = data_dir / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    shared_cache = args.data_dir / "cache"  # the default model is converted once for all runs
    shared_cache.mkdir(parents=True, exist_ok=True)
    if not (data_dir / "cache").exists():
        (data_dir / "cache").symlink_to(shared_cache.resolve())
    env = {**os.environ, "PREFLAB_DATA_DIR": str(data_dir), "PREFLAB_DEV": "1"}
    env.pop("PREFLAB_DATABASE_URL", None)
    preflab = [sys.executable, "-m", "app.cli"]
    subprocess.run([*preflab, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    token = create_user(preflab, env, f"pref-admin-{int(time.time())}" if reuse else "pref-admin", "admin")
    port = free_port()
    log = (data_dir / "server.log").open("a" if reuse else "w")
    server = subprocess.Popen(
        [*preflab, "serve", "--port", str(port), "--with-worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    stages: list = []
    begun = time.monotonic()
    try:
        base = f"http://127.0.0.1:{port}"
        api = Api(f"{base}/api/v1", token)
        api.wait_up()
        admin = ApiClient(base, token)
        generation = {"model": "default", "max_new_tokens": args.max_new_tokens}
        if reuse:
            pid, reward, ranked = reused(api, name)
        else:
            pid, reward, ranked = label_and_train(api, admin, name, train_prompts, generation, args, stages)

        # 4. PPO (forced at chance, so it is measured either way), or DPO on the same comparisons
        started = time.monotonic()
        if args.method == "dpo":
            body = json.loads(args.dpo)
            ppo_job = api.wait_job(api.post(f"/projects/{pid}/train/dpo", body)["job_id"], timeout=7200)
            m = ppo_job["metrics"]
            stage(
                stages,
                "DPO",
                started,
                f"held-out preference accuracy {m['accuracy/eval']:.3f} "
                f"[{m['accuracy/eval_low']:.2f}, {m['accuracy/eval_high']:.2f}], "
                f"KL {m['eval/kl']:.2f}, {m['step']} steps",
            )
        else:
            body = {"reward_model": reward["id"], "force": not reward["better_than_chance"]} | json.loads(
                args.ppo
            )
            ppo_job = api.wait_job(api.post(f"/projects/{pid}/train/ppo", body)["job_id"], timeout=7200)
            m = ppo_job["metrics"]
            stage(
                stages,
                "PPO",
                started,
                f"held-out reward {m['eval/reward_before']:+.3f} -> {m['eval/reward_after']:+.3f}, "
                f"KL {m['eval/kl_after']:.2f}, checkpoint {m.get('checkpoint')} "
                f"(step {m.get('checkpoint_step')}), stop {m.get('stop_reason')}",
            )
        training_minutes = round((time.monotonic() - started) / 60, 1)

        # 5. the blind round on fresh prompts, judged by the preference without noise
        started = time.monotonic()
        fresh = api.post(
            "/projects",
            {
                "name": f"fresh-{name}-{ppo_job['id']}",
                "completions_per_prompt": 2,
                "rankings_per_prompt": 1,
                "generation": generation,
            },
        )["id"]
        upload(api, fresh, fresh_prompts)
        round_ = api.post(
            f"/projects/{fresh}/evaluations",
            {"candidate": ppo_job["model_id"], "baseline": "default", "prompts": len(fresh_prompts)},
        )
        api.wait_job(round_["job_id"], timeout=7200)
        judge = make_labelers(
            admin, count=1, random_count=0, fast_count=0, prefix=f"judge{ppo_job['id']}", seed=args.seed
        )
        simulate(judge, round_["round_project_id"], scorer, noise=0.0, tie_margin=1e-9)
        result = api.get(f"/evaluations/{round_['id']}")
        stage(
            stages,
            "blind round",
            started,
            f"{result['wins']} wins, {result['ties']} ties, {result['losses']} losses: win rate "
            f"{result['win_rate']:.2f} [{result['ci_low']:.2f}, {result['ci_high']:.2f}]",
        )
    finally:
        server.terminate()
        server.wait(timeout=120)
        log.close()
    return {
        "preference": name,
        "prompts": len(train_prompts),
        "rankings": ranked,
        "method": args.method,
        "settings": json.loads(args.dpo if args.method == "dpo" else args.ppo),
        "reward_model": reward["held_out"],
        "better_than_chance": reward["better_than_chance"],
        "reward_before": m.get("eval/reward_before"),
        "reward_after": m.get("eval/reward_after"),
        "kl_after": m.get("eval/kl_after", m.get("eval/kl")),
        "dpo_accuracy": m.get("accuracy/eval"),
        "training_minutes": training_minutes,
        "checkpoint": m.get("checkpoint"),
        "checkpoint_step": m.get("checkpoint_step"),
        "stop_reason": m.get("stop_reason"),
        "wins": result["wins"],
        "ties": result["ties"],
        "losses": result["losses"],
        "win_rate": result["win_rate"],
        "ci_low": result["ci_low"],
        "ci_high": result["ci_high"],
        "minutes": round((time.monotonic() - begun) / 60, 1),
        "stages": {s[0]: round(s[1], 1) for s in stages},
    }


def label_and_train(
    api: Api, admin: ApiClient, name: str, train_prompts: list[str], generation: dict, args, stages: list
) -> tuple[int, dict, int]:
    """Steps 1-3: the project and the default policy's completions, the simulated rankings, the reward
    model. Returns (project id, reward model, rankings)."""
    scorer = PREFERENCES[name]
    # 1. the project, its prompts, the default policy's completions
    started = time.monotonic()
    pid = api.post(
        "/projects",
        {
            "name": f"pref-{name}",
            "instructions_md": f"Rank by the synthetic preference `{name}` (bench/preferences.py).",
            "completions_per_prompt": 4,
            "rankings_per_prompt": 2,
            "generation": generation,
        },
    )["id"]
    upload(api, pid, train_prompts)
    api.wait_job(api.post(f"/projects/{pid}/generate", {})["job_id"], timeout=7200)
    texts = [c["text"] for p in all_prompts(api, pid) for c in p["completions"]]
    scores = [scorer([], t) for t in texts]
    stage(
        stages,
        "generate",
        started,
        f"{len(texts)} completions; {name} mean {statistics.mean(scores):.3f} "
        f"sd {statistics.pstdev(scores):.3f}",
    )

    # 2. simulated labelers: two careful, one random
    started = time.monotonic()
    labelers = make_labelers(admin, count=3, random_count=1, fast_count=0, prefix="sim", seed=args.seed)
    ranked = simulate(labelers, pid, scorer, noise=NOISE[name], tie_margin=0.0)
    stage(stages, "rank", started, f"{ranked} rankings by 3 simulated labelers (1 random)")

    # 3. the reward model
    started = time.monotonic()
    body = {}
    if args.reward_epochs is not None:
        body["epochs"] = args.reward_epochs
    if args.reward_lr is not None:
        body["learning_rate"] = args.reward_lr
    reward_job = api.wait_job(api.post(f"/projects/{pid}/train/reward", body)["job_id"], timeout=7200)
    reward = api.get(f"/models/{reward_job['model_id']}")
    verdict = f"{reward['held_out']}; better than chance: {reward['better_than_chance']}"
    stage(stages, "reward model", started, verdict)
    return pid, reward, ranked


def reused(api: Api, name: str) -> tuple[int, dict, int]:
    """--reuse: the project, newest reward model and ranking count an earlier run of this preference left."""
    projects = api.get("/projects", limit=100)["items"]
    pid = next(p["id"] for p in projects if p["name"] == f"pref-{name}")
    reward = api.get("/models", project_id=pid, kind="reward")["items"][0]
    return pid, reward, 2 * len(all_prompts(api, pid))


def upload(api: Api, project_id: int, prompts: list[str]) -> None:
    body = "".join(json.dumps({"prompt": p}) + "\n" for p in prompts).encode()
    api._check(
        api.http.post(
            f"/projects/{project_id}/prompts", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    )


def all_prompts(api: Api, project_id: int) -> list[dict]:
    items, cursor = [], None
    while True:
        page = api.get(f"/projects/{project_id}/prompts", limit=500, **({"cursor": cursor} if cursor else {}))
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


if __name__ == "__main__":
    main()
