"""Training-step time of the toy DDPM by seed-block size, and guided-sampling time by block rows
(seeds x points), side by side (alternating rounds, best CPU time of each), against the
large-matmul peak measured in the same rounds.

    nice -n 5 python -m benchmarks.blocks --seeds 16 --blocks 2,4,8,16 --sample-rows 1024,4096,16384
"""
from __future__ import annotations

import argparse
import math

import torch

from benchmarks.common import best_interleaved, machine, one_thread
from benchmarks.flops import forward_flops
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--blocks", default="2,4,8,16", help="seed-block sizes compared")
    ap.add_argument("--kernels", default="fused", choices=("fused", "torch"))
    ap.add_argument("--epochs", type=float, default=10, help="epochs over |D| = 1250 per timing")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--sample-rows", default="", help="sampling block rows compared (\"\": none)")
    ap.add_argument("--n-sample", type=int, default=1000, help="points sampled per seed")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    variants = {sb: ToyDDPM(DDPMConfig(seed_block=sb, kernels=args.kernels))
                for sb in (int(s) for s in args.blocks.split(","))}
    any_b = next(iter(variants.values()))
    streams = SeedStreams(range(args.seeds))
    model = any_b.init(streams.keys("init"))
    data = torch.randn(args.seeds, 1250, 2)
    batch = min(any_b.config.batch_size, 1250)
    steps = args.epochs * math.ceil(1250 / batch)
    a = torch.randn(2048, 2048)
    fns = {sb: (lambda b=b: b.train(model, data, args.epochs, streams.keys("train")))
           for sb, b in variants.items()}
    best = best_interleaved({**fns, "peak": lambda: a @ a}, args.rounds)
    peak = 2 * 2048 ** 3 / best.pop("peak")
    flops = 3 * forward_flops(any_b) * batch * args.seeds * steps
    print(f"peak (2048x2048 fp32 matmul, best of {args.rounds}): {peak / 1e9:.1f} GFLOP/s; "
          f"{args.kernels} kernels, N={args.seeds}, batch {batch}, {steps:g} steps")
    for sb, t in best.items():
        print(f"seed block {sb:>3}: {t / steps / args.seeds * 1e3:.2f} ms per seed-step, "
              f"{flops / t / 1e9:.1f} GFLOP/s = {flops / t / peak:.1%} of peak")

    samplers = {r: ToyDDPM(DDPMConfig(sample_rows=r, kernels=args.kernels))
                for r in (int(s) for s in args.sample_rows.split(",") if s)}
    best = best_interleaved({r: (lambda b=b: b.sample(model, args.n_sample, streams.keys("eval"),
                                                       guide=model, omega=3.0))
                             for r, b in samplers.items()}, args.rounds)
    flops = forward_flops(any_b) * 2 * any_b.config.T * args.n_sample * args.seeds
    for r, t in best.items():
        print(f"sampling rows {r:>6}: {t / args.n_sample / args.seeds * 1e6:.1f} us per seed-point "
              f"(guided, {args.n_sample} points), {flops / t / 1e9:.1f} GFLOP/s = "
              f"{flops / t / peak:.1%} of peak")


if __name__ == "__main__":
    main()
