"""End-to-end A/B of `madlab run` (the default experiment: augment loop, SIMS, toy DDPM, exact W2)
at a git revision against the working tree: CPU seconds per seed-generation, side by side in one
run. Each round runs both trees as fresh one-thread processes, `--gens 1` and `--gens G`, and
charges the difference (generations 2..G, the steady state, without start-up and compilation) to
the tree; rounds alternate and the best round of each tree is kept.

    nice -n 5 python -m benchmarks ab_run e5eb300 --seeds 8 --gens 3 --repeats 3

Options it does not know go on to `madlab run` in both trees (`--learner resmlp-sin`, ...).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import TINY_RUN

ROOT = Path(__file__).resolve().parents[1]
SHARED = dict(seeds=8, threads=1, repeats=3)
TINY = dict(seeds=1, gens=2, repeats=1)
PASS_ON = True   # options it does not know: `madlab run`'s (args.extra)


def checkout(rev: str, folder: Path) -> Path:
    """The tree of `rev` (git archive) under folder."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def child_cpu(tree: Path, args: list[str]) -> float:
    """CPU seconds (user + system) of `python -m madlab run ARGS` run in `tree`, one thread."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MADLAB_OT_JOBS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "madlab", "run", *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def arguments(ap) -> None:
    ap.add_argument("rev", help="git revision to compare against (e.g. e5eb300, main)")
    ap.add_argument("--gens", type=int, default=3, help="G: generations 2..G are timed")


def run(args) -> None:
    extra = args.extra + (TINY_RUN if args.tiny else [])
    work = Path(tempfile.mkdtemp(prefix="ab_run-"))
    trees = {args.rev: checkout(args.rev, work / "rev"), "working tree": ROOT}
    best = dict.fromkeys(trees, float("inf"))
    for r in range(args.repeats):
        for name, tree in trees.items():
            cost = []
            for gens in (1, args.gens):
                out = work / f"out-{r}-{len(cost)}-{name.replace(' ', '_')}"
                cost.append(child_cpu(tree, ["--gens", str(gens), "--seeds", str(args.seeds),
                                             "--out", str(out), *extra]))
            per = (cost[1] - cost[0]) / (args.seeds * (args.gens - 1))
            best[name] = min(best[name], per)
            print(f"round {r + 1} {name:>14}: {per:.4f} CPU-s per seed-generation "
                  f"(gens 1: {cost[0]:.1f} s, gens {args.gens}: {cost[1]:.1f} s)", flush=True)
    for name, t in best.items():
        print(f"{name:>14}: best {t:.4f} CPU-s per seed-generation")
    a, b = best[args.rev], best["working tree"]
    print(f"RATIO {args.rev} / working tree: {a / b:.3f}x")
