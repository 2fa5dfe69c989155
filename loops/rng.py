"""Per-seed random streams: every draw of seed k comes from seed k's own generator.

A stream is identified by (seed, purpose, generation, step); its generator is seeded with a
SplitMix64 hash of that key (Steele et al. 2014, the seeding mix of java.util.SplittableRandom),
so seed k's numbers never depend on which other seeds run beside it, nor on the device. Draws
happen on the CPU and are then moved; with several torch threads (`madlab run` on a many-core
GPU host) the seeds' rows are filled by that many threads — the same numbers, since every row
comes from its own generator.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

PURPOSES = {
    "init": 0,         # model initialisation
    "real": 1,         # the real data set D_r (or D_r^t for the fresh loop)
    "train": 2,        # minibatches, noise and time steps while training
    "synth": 3,        # the synthetic set D_s^t handed to the next generation
    "aux-sample": 4,   # SIMS: the auxiliary set S drawn from the base model
    "finetune": 5,     # SIMS: fine-tuning the auxiliary model
    "eval": 6,         # model samples used to measure dist(G^t, p_r)
    "eval-real": 7,    # fresh real samples used to measure dist(G^t, p_r)
    "aux-init": 8,     # reserved for algorithms that build a fresh auxiliary model
    "experiment": 9,   # free for experiments built on the loop
}


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on uint64 arrays (wrap-around arithmetic)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def derive_seeds(seeds, *key: int) -> np.ndarray:
    """63-bit generator seeds for many `seeds` at once, each hashed with the key parts."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(seeds, dtype=np.uint64))
        for part in key:
            h = _splitmix64(h ^ _splitmix64(np.asarray([part], dtype=np.uint64)))
    return h >> np.uint64(1)


def derive_seed(*key: int) -> int:
    """A 63-bit seed from integer key parts (the first part is the run seed)."""
    return int(derive_seeds([key[0]], *key[1:])[0])


class SeedStreams:
    """The per-seed generators of one ensemble of runs."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")

    def __len__(self) -> int:
        return len(self.seeds)

    def generators(self, purpose: str, generation: int = 0, step: int = 0) -> list[torch.Generator]:
        """One fresh CPU generator per seed for (purpose, generation, step)."""
        code = PURPOSES[purpose]
        return [torch.Generator().manual_seed(int(v))
                for v in derive_seeds(self.seeds, code, generation, step)]

    def subset(self, index: Sequence[int]) -> "SeedStreams":
        return SeedStreams([self.seeds[i] for i in index])


_POOL: dict[str, object] = {}
MIN_SEEDS_PER_THREAD = 8


def _fill(out: torch.Tensor, generators: Sequence[torch.Generator],
          draw: Callable[[torch.Tensor, torch.Generator], None]) -> None:
    """draw(out[k], generators[k]) for every k, over torch.get_num_threads() threads when there
    are enough seeds (measured: 1.65x wall on 2 cores; torch's RNG kernels release the GIL)."""
    n = len(generators)
    threads = min(torch.get_num_threads(), n // MIN_SEEDS_PER_THREAD)

    def rows(lo: int, hi: int) -> None:
        for k in range(lo, hi):
            draw(out[k], generators[k])
    if threads <= 1:
        return rows(0, n)
    if _POOL.get("key") != (os.getpid(), threads):  # one pool per process and size
        _POOL.update(key=(os.getpid(), threads), pool=ThreadPoolExecutor(threads))
    step = -(-n // threads)
    list(_POOL["pool"].map(lambda lo: rows(lo, min(lo + step, n)), range(0, n, step)))


def randn(generators: Sequence[torch.Generator], shape: Sequence[int], *,
          device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, *shape] standard normals, row k from generators[k] (the numbers of
    torch.randn(shape, generator=generators[k]), written in place: no stacking copy)."""
    out = torch.empty((len(generators), *shape), dtype=dtype)
    _fill(out, generators, lambda row, g: row.normal_(generator=g))
    return out.to(device)


def rand(generators: Sequence[torch.Generator], shape: Sequence[int], *,
         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, *shape] uniforms on [0, 1), row k from generators[k] (torch.rand's numbers)."""
    out = torch.empty((len(generators), *shape), dtype=dtype)
    _fill(out, generators, lambda row, g: row.uniform_(generator=g))
    return out.to(device)
