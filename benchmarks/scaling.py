"""(c) Time per generation and peak memory for N = 1, 64, 1000 seeds, and 10 vs 100 generations.

Each configuration runs in its own process (`madlab.runner.run_config`, the product path, W2 by
exact OT per seed), so its peak resident memory is its own. The default experiment's epochs,
n_s and n_eval are scaled down (flags below) so that N = 1000 fits in minutes on 2 cores; the
`--memory-full` line measures N = 1000 at the full data sizes (|D_r| = 1000, |D_s| = 250,
n_s = 2000, n_eval = 1000) with T = 8 and the fd metric so that it is quick (memory does not grow
with T: noise is drawn 8 steps at a time; exact W2 solves one seed's 1000 x 1000 problem at a
time, 8 MB, but 1000 of them take minutes per generation).

    nice -n 5 python -m benchmarks scaling
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.harness import Timer, counts, peak_rss_gib
from toy.config import DEFAULT_LEARNER

SHARED = dict(seeds=[1, 64, 1000], threads=1, learner=DEFAULT_LEARNER)
TINY = dict(seeds=[1, 2], epochs=1, aux_epochs=1, n_aux=20, n_eval=20, gens_seeds=1, gens_list=[2, 3])


def child(spec: dict) -> None:
    """Run one configuration and print one JSON line: seconds and peak memory."""
    from madlab.config import RunConfig
    from madlab.runner import run_config
    cfg = RunConfig.from_flat(spec).validate()
    with Timer() as t:
        frame = run_config(cfg)
    phases = {k: float(frame.drop_duplicates(["generation"])[f"time_{k}_s"].sum())
              for k in ("train", "synth", "eval")}
    print(json.dumps({"wall": t.wall, "cpu": t.cpu, "rss_gib": peak_rss_gib(), **phases}))


def in_child(spec: dict) -> dict:
    """child(spec) in a fresh process (its own peak memory): its JSON line."""
    out = subprocess.run([sys.executable, "-m", "benchmarks", "scaling", "--child", json.dumps(spec)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def arguments(ap) -> None:
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--gens", type=int, default=2, help="generations for the N sweep")
    ap.add_argument("--epochs", type=float, default=10, help="base epochs (default experiment: 100)")
    ap.add_argument("--aux-epochs", type=float, default=5, help="SIMS epochs (default: 50)")
    ap.add_argument("--n-aux", type=int, default=200, help="n_s (default experiment: 2000)")
    ap.add_argument("--n-eval", type=int, default=200, help="evaluation points (default: 1000)")
    ap.add_argument("--gens-seeds", type=int, default=4, help="N for the 10 vs 100 generations runs")
    ap.add_argument("--gens-list", type=counts, default=[10, 100], help="generation counts compared")
    ap.add_argument("--memory-full", action="store_true", help="also N=1000 at full data sizes, T=8")


def run(args) -> None:
    if args.child:
        return child(json.loads(args.child))
    base = dict(epochs=args.epochs, aux_epochs=args.aux_epochs, n_aux=args.n_aux,
                n_eval=args.n_eval, metric=["w2"], learner=args.learner)
    print(f"scaled default experiment (augment, SIMS w=3, default toy DDPM): {base}")
    print(f"{'N':>6} {'gens':>5} {'wall s/gen':>11} {'CPU s/gen':>10} {'CPU ms/seed-gen':>16} "
          f"{'train':>6} {'synth':>6} {'eval':>6} {'peak GiB':>9}")

    def show(n, gens, r):
        total = r["train"] + r["synth"] + r["eval"]
        print(f"{n:>6} {gens:>5} {r['wall'] / gens:>11.3f} {r['cpu'] / gens:>10.3f} "
              f"{r['cpu'] / gens / n * 1e3:>16.2f} {r['train'] / total:>6.0%} "
              f"{r['synth'] / total:>6.0%} {r['eval'] / total:>6.0%} {r['rss_gib']:>9.2f}", flush=True)

    for n in args.seeds:
        show(n, args.gens, in_child(dict(base, seeds=n, gens=args.gens)))
    for g in args.gens_list:
        show(args.gens_seeds, g, in_child(dict(base, seeds=args.gens_seeds, gens=g)))
    if args.memory_full:
        r = in_child(dict(seeds=1000, gens=2, epochs=0.05, aux_epochs=0.05, T=8, metric=["fd"],
                          learner=args.learner))
        print(f"N=1000 full data sizes (|D|=1250, n_s=2000, n_eval=1000), T=8, fd, 2 gens: "
              f"peak {r['rss_gib']:.2f} GiB, {r['wall'] / 2:.1f} s/gen wall")
