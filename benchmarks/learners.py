"""The learners' cost: the default resmlp-silu (torch ops; SiLU has no fused kernel) vs resmlp-sin on
the fused kernels and on torch ops vs resmlp-ln fused (madlab 0.1's default), side by side in one
process, rounds interleaved so that a shared
machine's slow spells hit every variant alike.

Three measures: a training step (full batch over |D^t| = 1250 points, per seed), guided sampling
(omega = 3, per seed and point), and whole seed-generations of the default experiment through
`run_config` (100 + 50 epochs, n_s = 2000, |D_s| = 250, exact W2 on 1000 points).

    nice -n 5 python -m benchmarks.learners --seeds 16
"""
from __future__ import annotations

import argparse
import os

import torch

from benchmarks.common import best_interleaved, machine, one_thread
from loops.rng import SeedStreams
from madlab.config import RunConfig
from madlab.runner import run_config
from toy.ddpm import DDPMConfig, ToyDDPM

VARIANTS = {  # name: DDPMConfig options
    "resmlp-silu torch ops": dict(learner="resmlp-silu", kernels="torch"),
    "resmlp-ln fused": dict(learner="resmlp-ln", kernels="fused"),
    "resmlp-sin torch ops": dict(learner="resmlp-sin", kernels="torch"),
    "resmlp-sin fused": dict(learner="resmlp-sin", kernels="fused"),
}
RATIOS = (("resmlp-silu torch ops", "resmlp-sin fused"), ("resmlp-sin fused", "resmlp-ln fused"),
          ("resmlp-sin torch ops", "resmlp-sin fused"))


def run_with_kernels(kernels: str, cfg: RunConfig):
    """run_config with $MADLAB_KERNELS (how a user picks the kernels of a run) set to `kernels`."""
    before = os.environ.get("MADLAB_KERNELS")
    os.environ["MADLAB_KERNELS"] = kernels
    try:
        return run_config(cfg)
    finally:
        if before is None:
            del os.environ["MADLAB_KERNELS"]
        else:
            os.environ["MADLAB_KERNELS"] = before


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=16, help="seeds vectorized in one process")
    ap.add_argument("--epochs", type=int, default=10, help="training steps timed (full batch)")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--gens", type=int, default=2, help="generations of the end-to-end run (0: skip)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    N = args.seeds
    streams = SeedStreams(range(N))
    data = torch.randn(N, 1250, 2)
    backends = {name: ToyDDPM(DDPMConfig(**opts)) for name, opts in VARIANTS.items()}
    models = {name: b.init(streams.keys("init")) for name, b in backends.items()}
    train = {name: (lambda b=b, m=models[name]: b.train(m, data, args.epochs, streams.keys("train")))
             for name, b in backends.items()}
    sample = {name: (lambda b=b, m=models[name]: b.sample(m, args.n_sample, streams.keys("eval"),
                                                          guide=m, omega=3.0))
              for name, b in backends.items()}
    for fn in (*train.values(), *sample.values()):   # compile, warm caches
        fn()
    results = {"training": {k: v / args.epochs / N * 1e6 for k, v in best_interleaved(train, args.rounds).items()},
               "guided sampling": {k: v / args.n_sample / N * 1e6
                                   for k, v in best_interleaved(sample, args.rounds).items()}}
    units = {"training": "us CPU per seed-step", "guided sampling": "us CPU per seed-point",
             "seed-generation": "CPU-s per seed-generation"}
    if args.gens:
        runs = {name: (lambda o=opts: run_with_kernels(o["kernels"], RunConfig.from_flat(
                    seeds=N, gens=args.gens, learner=o["learner"])))
                for name, opts in VARIANTS.items()}
        results["seed-generation"] = {k: v / N / args.gens for k, v in
                                      best_interleaved(runs, max(1, args.rounds - 1)).items()}
    for measure, row in results.items():
        for name, value in row.items():
            print(f"{measure:>16} {name:>21}: {value:9.3f} {units[measure]}")
    for a, b in RATIOS:
        print(f"RATIO {a} / {b} (N={N}): " + ", ".join(
            f"{measure} {row[a] / row[b]:.2f}x" for measure, row in results.items()))


if __name__ == "__main__":
    main()
