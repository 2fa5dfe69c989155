"""CPU cost of the per-seed random draws of one generation of the default experiment (full batch:
100 + 50 epochs over 1250 / 2000 points, sampler noise for S, D_s and the evaluation samples),
old against new, side by side in one run: the per-seed torch.Generator streams of `--rev`
(loops/rng.py read from git: one mt19937 per seed, rows filled on the host) against the working
tree's Philox streams (one vectorized call for all seeds, the C kernel on the CPU), for each N and
torch thread count, alternating rounds, best CPU and wall time of each.

    python -m benchmarks.draws --seeds 16,64,1000 --threads 1,2
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.before_after import _load
from benchmarks.common import Timer, machine
from loops import philox
from loops.rng import SeedStreams
from toy.ddpm import RANDOM_CHUNK

SHAPES = dict(epochs=100, aux_epochs=50, n=1250, n_aux=2000, n_synth=250, n_eval=1000, T=40, dim=2)


def draw_calls(epochs, aux_epochs, n, n_aux, n_synth, n_eval, T, dim):
    """(purpose, shape of one call, offset) of every draw ToyDDPM.train/sample make in one
    generation, in chunks of RANDOM_CHUNK epochs or steps."""
    calls = []
    for points, n_epochs in ((n, epochs), (n_aux, aux_epochs)):
        for e in range(0, n_epochs, RANDOM_CHUNK):
            calls.append(("train", (min(RANDOM_CHUNK, n_epochs - e), points, dim + 2),
                          e * points * (dim + 2)))
    for points in (n_aux, n_synth, n_eval):
        for s in range(0, T + 1, RANDOM_CHUNK):
            calls.append(("eval", (min(RANDOM_CHUNK, T + 1 - s), points, dim), s * points * dim))
    return calls


def old_generation(rng, seeds):
    """One generation's draws with the per-seed generators of the old loops/rng.py."""
    streams = rng.SeedStreams(seeds)
    gens = {p: streams.generators(p) for p in ("train", "eval")}  # continued from call to call
    for purpose, shape, _ in draw_calls(**SHAPES):
        rng.randn(gens[purpose], shape)


def new_generation(seeds):
    """The same numbers' worth of draws from the Philox streams, by offset."""
    streams = SeedStreams(seeds)
    keys = {p: streams.keys(p) for p in ("train", "eval")}
    for purpose, shape, offset in draw_calls(**SHAPES):
        keys[purpose].randn(shape, offset=offset)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="16,64,1000", help="ensemble sizes N compared")
    ap.add_argument("--threads", default="1,2", help="torch thread counts compared")
    ap.add_argument("--rev", default="e5eb300", help="git revision of the old loops/rng.py")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    old = _load(args.rev, "loops/rng.py", "rng_before_draws")
    numbers = sum(torch.Size(shape).numel() for _, shape, _ in draw_calls(**SHAPES))
    print(machine())
    print(f"{numbers / 1e6:.2f} M normals per seed-generation; old = {args.rev} (per-seed "
          f"torch.Generator), new = working tree (Philox, "
          f"{'C kernel' if philox.kernel() else 'torch ops'})")
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for N in (int(s) for s in args.seeds.split(",")):
            seeds = range(N)
            fns = {"old": lambda: old_generation(old, seeds), "new": lambda: new_generation(seeds)}
            best = {name: (float("inf"), float("inf")) for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    with Timer() as t:
                        fn()
                    best[name] = (min(best[name][0], t.wall), min(best[name][1], t.cpu))
            (ow, oc), (nw, nc) = best["old"], best["new"]
            per = 1e9 / (N * numbers)
            print(f"threads {threads} N={N:>5}: old {ow:7.3f} s wall {oc:7.3f} s CPU "
                  f"({oc * per:.2f} ns/number) | new {nw:7.3f} s wall {nc:7.3f} s CPU "
                  f"({nc * per:.2f} ns/number) | RATIO old/new CPU {oc / nc:.2f}x, wall "
                  f"{ow / nw:.2f}x", flush=True)


if __name__ == "__main__":
    main()
