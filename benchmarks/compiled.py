"""torch.compile (kernels="compile", toy/compiled.py) against torch ops and the fused C kernels, for
every fast-path learner, side by side in one process, rounds interleaved so that a shared machine's
slow spells hit every variant alike (issue 26).

Measures, as benchmarks/learners.py: a training step (full batch over |D^t| = 1250 points, per
seed), guided sampling (omega = 3, per seed and point) and whole seed-generations of the default
experiment through `run_config` (best of the rounds; the first round, which pays the
compilation of every new shape, is printed apart). Compile cost: the first training and sampling
call of each compiled variant, wall and CPU of this process and its compile workers.

    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks.compiled --seeds 16
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks.common import best_interleaved, machine, one_thread
from benchmarks.learners import run_with_kernels
from loops.rng import SeedStreams
from madlab.config import RunConfig
from toy import compiled
from toy.ddpm import DDPMConfig, ToyDDPM

VARIANTS = {  # name: DDPMConfig options
    "resmlp-silu torch ops": dict(learner="resmlp-silu", kernels="torch"),
    "resmlp-silu compile": dict(learner="resmlp-silu", kernels="compile"),
    "resmlp-sin torch ops": dict(learner="resmlp-sin", kernels="torch"),
    "resmlp-sin fused": dict(learner="resmlp-sin", kernels="fused"),
    "resmlp-sin compile": dict(learner="resmlp-sin", kernels="compile"),
    "resmlp-ln fused": dict(learner="resmlp-ln", kernels="fused"),
    "resmlp-ln compile": dict(learner="resmlp-ln", kernels="compile"),
}
RATIOS = (("resmlp-silu torch ops", "resmlp-silu compile"),
          ("resmlp-silu compile", "resmlp-sin fused"),
          ("resmlp-sin fused", "resmlp-sin compile"),
          ("resmlp-ln fused", "resmlp-ln compile"))


def cpu_with_children() -> float:
    """CPU s of this process and its finished children (inductor's compile workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=16, help="seeds vectorized in one process")
    ap.add_argument("--epochs", type=int, default=10, help="training steps timed (full batch)")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--gens", type=int, default=2, help="generations of the end-to-end run (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    ap.add_argument("--seed-block", type=int, default=None,
                    help="seeds per training block for the compiled variants (default: the path's 16)")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    variants = dict(VARIANTS)
    if not compiled.available():
        print(f"torch.compile unavailable ({compiled.error()}): compiled variants skipped")
        variants = {k: v for k, v in variants.items() if v["kernels"] != "compile"}
    N = args.seeds
    streams = SeedStreams(range(N))
    data = torch.randn(N, 1250, 2)
    backends = {name: ToyDDPM(DDPMConfig(**opts, seed_block=args.seed_block
                                         if opts["kernels"] == "compile" else None))
                for name, opts in variants.items()}
    models = {name: b.init(streams.keys("init")) for name, b in backends.items()}
    train = {name: (lambda b=b, m=models[name]: b.train(m, data, args.epochs, streams.keys("train")))
             for name, b in backends.items()}
    sample = {name: (lambda b=b, m=models[name]: b.sample(m, args.n_sample, streams.keys("eval"),
                                                          guide=m, omega=3.0))
              for name, b in backends.items()}
    for name in backends:   # first calls: compilation (compiled variants), warm caches
        for what, fn in (("training", train[name]), ("sampling", sample[name])):
            w0, c0 = time.perf_counter(), cpu_with_children()
            fn()
            if variants[name]["kernels"] == "compile":
                print(f"first call (compiles) {what:>8} {name:>21}: {time.perf_counter() - w0:6.1f} s wall, "
                      f"{cpu_with_children() - c0:6.1f} CPU-s incl. compile workers", flush=True)
    results = {"training": {k: v / args.epochs / N * 1e6 for k, v in best_interleaved(train, args.rounds).items()},
               "guided sampling": {k: v / args.n_sample / N * 1e6
                                   for k, v in best_interleaved(sample, args.rounds).items()}}
    units = {"training": "us CPU per seed-step", "guided sampling": "us CPU per seed-point",
             "seed-generation": "CPU-s per seed-generation"}
    if args.gens:
        runs = {name: (lambda o=opts: run_with_kernels(o["kernels"], RunConfig.from_flat(
                    seeds=N, gens=args.gens, learner=o["learner"])))
                for name, opts in variants.items()}
        first = {}
        for name, fn in runs.items():   # the first round: new shapes compile (in-process cache)
            w0, c0 = time.perf_counter(), cpu_with_children()
            fn()
            first[name] = (time.perf_counter() - w0, cpu_with_children() - c0)
        for name, (wall, cpu) in first.items():
            print(f"first end-to-end run {name:>21}: {wall:6.1f} s wall, {cpu:6.1f} CPU-s incl. "
                  f"compile workers ({N} seeds x {args.gens} generations)")
        results["seed-generation"] = {k: v / N / args.gens for k, v in
                                      best_interleaved(runs, max(1, args.rounds - 1)).items()}
    for measure, row in results.items():
        for name, value in row.items():
            print(f"{measure:>16} {name:>21}: {value:9.3f} {units[measure]}")
    for a, b in RATIOS:
        if a in variants and b in variants:
            print(f"RATIO {a} / {b} (N={N}): " + ", ".join(
                f"{measure} {row[a] / row[b]:.2f}x" for measure, row in results.items()))


if __name__ == "__main__":
    main()
