"""CPU cost of the per-seed random draws of one generation of the default experiment (full batch:
100 + 50 epochs over 1250 / 2000 points, sampler noise for S, D_s and the evaluation samples),
with 1 thread and with more, side by side. On a GPU run these draws are the part that stays on
the host (device-independent streams, loops/rng.py).

    python -m benchmarks.draws --seeds 1000 --threads 1,2
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import Timer, machine
from loops.rng import SeedStreams, randn
from toy.ddpm import RANDOM_CHUNK


def one_generation(streams: SeedStreams, epochs=100, aux_epochs=50, n=1250, n_aux=2000,
                   n_synth=250, n_eval=1000, T=40, dim=2) -> None:
    """The draws ToyDDPM.train/sample make in one generation (chunks of RANDOM_CHUNK)."""
    chunks = lambda k: -(-k // RANDOM_CHUNK)  # noqa: E731
    for points, n_epochs in ((n, epochs), (n_aux, aux_epochs)):
        for _ in range(chunks(n_epochs)):
            randn(streams.keys("train"), (RANDOM_CHUNK, points, dim + 2))
    for points in (n_aux, n_synth, n_eval):
        for _ in range(chunks(T + 1)):
            randn(streams.keys("eval"), (RANDOM_CHUNK, points, dim))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--threads", default="1,2", help="torch thread counts compared")
    args = ap.parse_args(argv)
    print(machine())
    streams = SeedStreams(range(args.seeds))
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        with Timer() as t:
            one_generation(streams)
        print(f"{threads:>3} thread(s): draws of one generation at N={args.seeds}: {t.wall:.2f} s wall, "
              f"{t.cpu:.2f} s CPU ({t.wall * 100 / 60:.1f} min per 100 generations)")


if __name__ == "__main__":
    main()
