"""Do the labeler rules find the bad labelers, and does leaving them out help the reward model?

    .venv/bin/python bench/labeler_quality.py [--prompts 300] [--gold 24] [--preference second_person] \\
        [--data-dir /tmp/preflab-quality]

Through a real server (`preflab serve --with-worker`, fresh SQLite), as a labeling lead would run it:

1. a project with K = 2 and 3 rankings per prompt, gold rate 0.1: ``--prompts`` HH-RLHF helpful-base test
   pairs uploaded as prompts with their two answers, plus ``--gold`` more as gold tasks whose gold order is
   the preference's (bench/preferences.py; pairs the preference cannot tell apart are skipped);
2. five simulated labelers (`trainer/simulate.py`) following the preference with its Bradley-Terry noise:
   three careful, one ranking at random, one submitting the order shown in 0.3 s;
3. the Labelers view: which labelers the project's rules flag, and why;
4. two reward models with the API's defaults: on everyone's rankings, and with
   ``exclude_labeler_status=flagged,excluded``; each scored on ``--test`` further HH pairs that no one
   ranked, judged by the preference without noise (a clean test set, the same for both).

Prints the figures; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from closed_loop import Api, create_user, free_port
from preferences import NOISE, PREFERENCES

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.client import ApiClient  # noqa: E402
from trainer.reward_model import score  # noqa: E402
from trainer.simulate import make_labelers, simulate  # noqa: E402

HH = ROOT.parent / "shared" / "data" / "hh-rlhf" / "helpful-base-test.jsonl.gz"


def hh_pairs(n: int) -> list[tuple[str, str, str]]:
    """(first human turn, chosen answer, rejected answer) of single-turn HH dialogues."""
    pairs = []
    with gzip.open(HH, "rt", encoding="utf-8") as file:
        for line in file:
            row = json.loads(line)
            if row["chosen"].count("\n\nHuman:") != 1:
                continue
            prompt, chosen = row["chosen"].split("\n\nAssistant:", 1)
            rejected = row["rejected"].split("\n\nAssistant:", 1)[1]
            prompt = prompt.removeprefix("\n\nHuman:").strip()
            chosen, rejected = chosen.strip(), rejected.strip()
            if prompt and chosen and rejected and chosen != rejected:
                pairs.append((prompt, chosen, rejected))
            if len(pairs) == n:
                break
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--gold", type=int, default=24)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--preference", default="second_person", choices=sorted(PREFERENCES))
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/preflab-quality"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not HH.is_file():
        sys.exit(f"Missing {HH}")
    scorer = PREFERENCES[args.preference]
    pairs = hh_pairs(args.prompts + args.gold * 3 + args.test)
    ordinary, rest = pairs[: args.prompts], pairs[args.prompts :]
    distinct = [p for p in rest if scorer([], p[1]) != scorer([], p[2])]
    gold, test = distinct[: args.gold], distinct[args.gold : args.gold + args.test]

    data_dir = args.data_dir
    if data_dir.exists():
        subprocess.run(["rm", "-rf", str(data_dir)], check=True)
    data_dir.mkdir(parents=True)
    env = {**os.environ, "PREFLAB_DATA_DIR": str(data_dir), "PREFLAB_DEV": "1"}
    env.pop("PREFLAB_DATABASE_URL", None)
    preflab = [sys.executable, "-m", "app.cli"]
    subprocess.run([*preflab, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    token = create_user(preflab, env, "quality-admin", "admin")
    port = free_port()
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen(
        [*preflab, "serve", "--port", str(port), "--with-worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        api = Api(f"{base}/api/v1", token)
        api.wait_up()
        project = {
            "name": "quality",
            "instructions_md": f"Rank by `{args.preference}`.",
            "completions_per_prompt": 2,
            "rankings_per_prompt": 3,
            "gold_rate": 0.1,
        }
        pid = api.post("/projects", project)["id"]
        lines = [{"prompt": p, "completions": [a, b]} for p, a, b in ordinary]
        for p, a, b in gold:
            better = 0 if scorer([], a) > scorer([], b) else 1
            lines.append({"prompt": p, "completions": [a, b], "gold": [[better], [1 - better]]})
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        api.http.post(
            f"/projects/{pid}/prompts", content=body, headers={"Content-Type": "application/x-ndjson"}
        ).raise_for_status()

        started = time.monotonic()
        admin = ApiClient(base, token)
        labelers = make_labelers(admin, count=5, random_count=1, fast_count=1, prefix="q", seed=args.seed)
        kinds = {labeler.name: labeler.kind for labeler in labelers}
        ranked = simulate(labelers, pid, scorer, noise=NOISE[args.preference], tie_margin=0.0)
        print(f"{ranked} rankings by 5 simulated labelers in {time.monotonic() - started:.0f} s")

        rows = api.get(f"/projects/{pid}/labelers")["items"]
        print(
            "\nlabeler            kind     rankings  gold (agreement)  too fast  agreement  status   reasons"
        )
        for row in rows:
            gold_text = (
                f"{row['gold_rankings']:>3} ({row['gold_agreement']:+.2f})"
                if row["gold_agreement"] is not None
                else "  -"
            )
            agree = f"{row['agreement']:+.2f}" if row["agreement"] is not None else "  -"
            print(
                f"{row['username']:<18} {kinds.get(row['username'], '?'):<8} {row['rankings']:>8}  "
                f"{gold_text:<16}  {row['fast_share']:>7.0%}  {agree:>9}  {row['status']:<8} "
                f"{'; '.join(row['reasons'])}"
            )
        flagged = {row["username"] for row in rows if row["status"] != "ok"}
        bad = {name for name, kind in kinds.items() if kind != "careful"}
        print(f"\nflagged exactly the random and the fast labeler: {flagged == bad}")

        results = {}
        for label, filters in (
            ("everyone", {}),
            ("flagged left out", {"exclude_labeler_status": ["flagged", "excluded"]}),
        ):
            started = time.monotonic()
            job = api.wait_job(
                api.post(f"/projects/{pid}/train/reward", {"filters": filters, "force": True})["job_id"],
                timeout=7200,
            )
            model = api.get(f"/models/{job['model_id']}")
            directory = data_dir / "artifacts" / model["artifact"]
            chats = [[{"role": "user", "content": p}] for p, _, _ in test]
            first = score(directory, [(c, a) for c, (_, a, _) in zip(chats, test, strict=True)])
            second = score(directory, [(c, b) for c, (_, _, b) in zip(chats, test, strict=True)])
            right = sum(
                (x > y) == (scorer([], a) > scorer([], b))
                for x, y, (_, a, b) in zip(first, second, test, strict=True)
            )
            results[label] = right / len(test)
            print(
                f"reward model, {label}: own held-out {model['held_out']}; "
                f"clean test accuracy {results[label]:.3f} on {len(test)} pairs "
                f"({time.monotonic() - started:.0f} s)"
            )
        print(
            "\nleaving the flagged labelers out: "
            f"{results['flagged left out'] - results['everyone']:+.3f} accuracy on the clean test set"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
