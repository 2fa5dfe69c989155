"""A/B of one training block-step (fused forward + backward, no data prep or Adam) of the toy
DDPM at a git revision against the working tree, in one process, alternating rounds, best CPU
time of each: for checking that a change to toy/ddpm.py or the kernels is faster.

    nice -n 5 python -m benchmarks.ab_revision HEAD~1 --seeds 8 --rows 1250
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.before_after import load_before, streams_of
from benchmarks.common import best_interleaved, machine, one_thread
from toy import ddpm


def block_step(module, seeds: int, rows: int):
    b = module.ToyDDPM(module.DDPMConfig(kernels="fused"))
    _, p = b._pack(b.init(streams_of(module, range(seeds))("init")), 0, seeds)
    grads = b._views(torch.empty(sum(v.numel() for v in p.values())), seeds)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(seeds, rows, 2, generator=g), torch.randn(seeds, rows, 2, generator=g)
    emb, ws = b.embed(torch.randint(1, b.config.T + 1, (seeds, rows), generator=g)), {}

    def step():
        pred, saved = b._forward_fused(p, x, emb, True, ws)
        b._backward_fused(p, grads, x, emb, saved, pred.sub_(eps).mul_(1 / (rows * 2)), ws)
    return step


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rev", help="git revision of toy/ddpm.py to compare against (e.g. HEAD~1)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds in the block")
    ap.add_argument("--rows", type=int, default=1250, help="rows per seed (full batch: 1250)")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    steps = {args.rev: block_step(load_before(args.rev), args.seeds, args.rows),
             "working tree": block_step(ddpm, args.seeds, args.rows)}
    for step in steps.values():
        step()  # warm: first-call allocations and kernel loading
    ten = {name: (lambda step=step: [step() for _ in range(10)]) for name, step in steps.items()}
    best = {name: t / 10 / args.seeds for name, t in best_interleaved(ten, args.rounds).items()}
    for name, t in best.items():
        print(f"{name:>14}: {t * 1e6:7.0f} us CPU per seed-step (fwd + bwd)")
    print(f"RATIO {args.rev} / working tree: {best[args.rev] / best['working tree']:.3f}x")


if __name__ == "__main__":
    main()
