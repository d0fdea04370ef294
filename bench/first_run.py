"""How long a new user waits: `make run` (or `make test`) from a fresh clone, timed stage by stage.

    python bench/first_run.py [--target run|test] [--no-compiler] [--no-pip-cache] [--port 8010]

Clones this checkout's HEAD into a temporary folder and runs the README's command there, as a new user
would. For `run` it prints when each stage began (the Makefile's "==> " lines), when the first page
(/login) answered, and when the demo project's generate job succeeded; for `test`, the whole run and
the share spent installing. `--no-compiler` hides gcc, g++, cc, c++ and clang from PATH, so any
package built from C/C++ source fails instead of compiling; `--no-pip-cache` makes pip download every
package, as on a bare machine. Afterwards it checks that nothing of llama-cpp-python, llm or openai
was installed and that pip built no wheel but PrefLab's own.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMPILERS = re.compile(
    r"^(gcc|g\+\+|cc|c\+\+|cpp|clang.*|x86_64-linux-gnu-(gcc|g\+\+|cpp).*|aarch64-linux-gnu-.*)$"
)
UNWANTED = ("llama_cpp", "llm", "openai", "sentence_transformers")


def path_without_compilers(folder: Path) -> str:
    """A PATH of symlinks to every program on the current PATH except the C/C++ compilers."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = folder / name
            if COMPILERS.match(name) or link.exists() or link.is_symlink():
                continue
            link.symlink_to(Path(directory) / name)
    return str(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["run", "test"], default="run")
    parser.add_argument("--no-compiler", action="store_true")
    parser.add_argument("--no-pip-cache", action="store_true")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="preflab-first-run-"))
    clone = work / "preflab"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFLAB_", "VIRTUAL_ENV"))}
    python = sys.executable if not Path(sys.prefix, "pyvenv.cfg").exists() else sys._base_executable
    if args.no_compiler:
        env["PATH"] = path_without_compilers(work / "bin")
        assert subprocess.run(["sh", "-c", "command -v gcc cc g++"], env=env).returncode != 0
    if args.no_pip_cache:
        env["PIP_NO_CACHE_DIR"] = "1"
    command = ["make", args.target, f"PYTHON={python}", f"PORT={args.port}"]
    compilers = "hidden" if args.no_compiler else "on PATH"
    print(f"clone: {clone}\ncommand: {' '.join(command)} (compilers {compilers})")

    started = time.monotonic()
    log_path = work / "make.log"
    process = subprocess.Popen(
        command,
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    stages: list[tuple[float, str]] = []
    built: list[str] = []

    def read_output() -> None:
        with log_path.open("w") as log:
            for line in process.stdout:
                log.write(line)
                if line.startswith("==> "):
                    stages.append((time.monotonic() - started, line[4:].strip()))
                if "Building wheel for" in line or "Building editable for" in line:
                    built.append(line.strip())

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    figures: dict[str, float] = {}
    try:
        if args.target == "test":
            process.wait(timeout=args.timeout)
            figures["make test (s)"] = time.monotonic() - started
            suite = next((t for t, name in stages if name.startswith("Running the test suite")), None)
            if suite is not None:
                figures["installing, before the suite (s)"] = suite
        else:
            figures |= wait_for_demo(clone, args.port, started, args.timeout, process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        reader.join(timeout=10)

    print("\nstages (seconds after the start):")
    for at, name in stages:
        print(f"  {at:7.1f}  {name}")
    print("\nfigures:")
    for name, value in figures.items():
        print(f"  {name}: {value:.1f}")
    site = next((clone / ".venv/lib").glob("python3*/site-packages"), None)
    present = [name for name in UNWANTED if site and (site / name).exists()]
    print(f"\nunwanted packages in .venv: {present or 'none'}")
    print(f"wheels pip built: {built or 'none'}")
    print(f"exit status: {process.returncode}; log: {log_path}")
    if not args.keep and process.returncode in (0, -signal.SIGTERM, None) and not present:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0 if not present and (args.target == "run" or process.returncode == 0) else 1


def wait_for_demo(clone: Path, port: int, started: float, timeout: float, process) -> dict[str, float]:
    figures: dict[str, float] = {}
    database = clone / "data" / "preflab.sqlite3"
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"make run exited with {process.returncode} before the demo was ready")
        elapsed = time.monotonic() - started
        if "first page (s)" not in figures and page_answers(port):
            figures["first page (s)"] = elapsed
        status = demo_job_status(database)
        if status == "running" and "demo generation started (s)" not in figures:
            figures["demo generation started (s)"] = elapsed
        if status == "succeeded":
            figures["demo completions ready (s)"] = elapsed
            return figures
        if status == "failed":
            raise SystemExit("the demo's generate job failed")
        time.sleep(0.5)
    raise SystemExit(f"not ready after {timeout:.0f} s: {figures}")


def page_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def demo_job_status(database: Path) -> str | None:
    if not database.exists():
        return None
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as connection:
            row = connection.execute(
                "SELECT status FROM jobs WHERE kind = 'generate' ORDER BY id LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


if __name__ == "__main__":
    sys.exit(main())
