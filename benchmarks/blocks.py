"""Training-step time of the toy DDPM by seed-block size, and guided-sampling time by block rows
(seeds x points), side by side (alternating rounds, best CPU time of each), against the
large-matmul peak measured in the same rounds.

The fused kernels serve ReLU learners (default resmlp-sin); `--kernels torch` times torch ops.

    nice -n 5 python -m benchmarks blocks --seeds 16 --blocks 2,4,8,16 --sample-rows 1024,4096,16384
"""
from __future__ import annotations

import math

import torch

from benchmarks.flops import forward_flops
from benchmarks.harness import best_interleaved, counts
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM

SHARED = dict(seeds=16, threads=1, repeats=4, learner="resmlp-sin")
TINY = dict(seeds=2, blocks=[1, 2], epochs=1, repeats=1, sample_rows=[64, 256], n_sample=20)


def arguments(ap) -> None:
    ap.add_argument("--blocks", type=counts, default=[2, 4, 8, 16], help="seed-block sizes compared")
    ap.add_argument("--kernels", default="fused", choices=("fused", "torch"))
    ap.add_argument("--epochs", type=float, default=10, help="epochs over |D| = 1250 per timing")
    ap.add_argument("--sample-rows", type=counts, default=[],
                    help="sampling block rows compared (default: none)")
    ap.add_argument("--n-sample", type=int, default=1000, help="points sampled per seed")


def run(args) -> None:
    config = dict(learner=args.learner, kernels=args.kernels)
    variants = {sb: ToyDDPM(DDPMConfig(seed_block=sb, **config)) for sb in args.blocks}
    any_b = next(iter(variants.values()))
    streams = SeedStreams(range(args.seeds))
    model = any_b.init(streams.keys("init"))
    data = torch.randn(args.seeds, 1250, 2)
    batch = min(any_b.config.batch_size, 1250)
    steps = args.epochs * math.ceil(1250 / batch)
    a = torch.randn(2048, 2048)
    fns = {sb: (lambda b=b: b.train(model, data, args.epochs, streams.keys("train")))
           for sb, b in variants.items()}
    best = best_interleaved({**fns, "peak": lambda: a @ a}, args.repeats)
    peak = 2 * 2048 ** 3 / best.pop("peak")
    flops = 3 * forward_flops(any_b) * batch * args.seeds * steps
    print(f"peak (2048x2048 fp32 matmul, best of {args.repeats}): {peak / 1e9:.1f} GFLOP/s; "
          f"{args.kernels} kernels, N={args.seeds}, batch {batch}, {steps:g} steps")
    for sb, t in best.items():
        print(f"seed block {sb:>3}: {t / steps / args.seeds * 1e3:.2f} ms per seed-step, "
              f"{flops / t / 1e9:.1f} GFLOP/s = {flops / t / peak:.1%} of peak")

    samplers = {r: ToyDDPM(DDPMConfig(sample_rows=r, **config)) for r in args.sample_rows}
    best = best_interleaved({r: (lambda b=b: b.sample(model, args.n_sample, streams.keys("eval"),
                                                       guide=model, omega=3.0))
                             for r, b in samplers.items()}, args.repeats)
    flops = forward_flops(any_b) * 2 * any_b.config.T * args.n_sample * args.seeds
    for r, t in best.items():
        print(f"sampling rows {r:>6}: {t / args.n_sample / args.seeds * 1e6:.1f} us per seed-point "
              f"(guided, {args.n_sample} points), {flops / t / 1e9:.1f} GFLOP/s = "
              f"{flops / t / peak:.1%} of peak")
