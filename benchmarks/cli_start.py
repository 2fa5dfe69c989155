"""Start-up time of the `madlab` command: `--help` of each command and `--version`, as a user runs
them (a fresh `python -m madlab` process each time), beside a bare Python and `import torch`, and
beside the same commands at an earlier git revision (default: e5eb300, before the option schema
made the start torch-free).

The median, not the best, of --repeats processes each: start-up varies with the page cache.

    python -m benchmarks cli_start                       # median of 7 runs each
    python -m benchmarks cli_start --repeats 11 --before HEAD~3
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = dict(repeats=7)
TINY = dict(repeats=1, before="")
COMMANDS = [["--help"], ["--version"], ["run", "--help"], ["sweep", "--help"], ["report", "--help"],
            ["status", "--help"], ["experiment", "--help"]]


def median_wall(argv: list[str], runs: int, tree: Path) -> float | None:
    """Median wall seconds of `argv` in a fresh process with `tree` first on the path (None if it fails)."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=tree, env=env, capture_output=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            return None
    return statistics.median(times)


def checkout(revision: str, into: Path) -> Path | None:
    """The source tree at `revision` (git archive), or None without git or that revision."""
    try:
        blob = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    return into


def arguments(ap) -> None:
    ap.add_argument("--before", default="e5eb300", help="git revision to compare with ('' = none)")


def run(args) -> None:
    print(f"median wall seconds of {args.repeats} fresh processes each")
    with tempfile.TemporaryDirectory() as tmp:
        before = checkout(args.before, Path(tmp)) if args.before else None
        print(f"{'command':<32} {'this tree':>10} {args.before or '':>10}")
        for label, code in (("python -c pass", "pass"), ("python -c 'import torch'", "import torch")):
            print(f"{label:<32} {median_wall([sys.executable, '-c', code], args.repeats, ROOT):>10.2f}")
        for command in COMMANDS:
            now = median_wall([sys.executable, "-m", "madlab", *command], args.repeats, ROOT)
            old = median_wall([sys.executable, "-m", "madlab", *command], args.repeats, before) if before else None
            show = lambda t: f"{t:10.2f}" if t is not None else f"{'fails':>10}"  # noqa: E731
            print(f"{'madlab ' + ' '.join(command):<32} {show(now)} {show(old) if before else ''}")
