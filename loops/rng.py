"""Per-seed random streams: every draw of seed k comes from seed k's own generator.

A stream is identified by (seed, purpose, generation, step); its generator is seeded from a
`numpy.random.SeedSequence` over that key, so seed k's numbers never depend on which other
seeds run beside it, nor on the device. Draws happen on the CPU and are then moved.
"""
from __future__ import annotations

from typing import Sequence

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


def derive_seed(*key: int) -> int:
    """A 63-bit seed from integer key parts, via numpy's SeedSequence hashing."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]
                                   + [int(k) >> 32 for k in key]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


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
        return [torch.Generator().manual_seed(derive_seed(s, code, generation, step))
                for s in self.seeds]

    def subset(self, index: Sequence[int]) -> "SeedStreams":
        return SeedStreams([self.seeds[i] for i in index])


def randn(generators: Sequence[torch.Generator], shape: Sequence[int], *,
          device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, *shape] standard normals, row k from generators[k]."""
    out = torch.stack([torch.randn(tuple(shape), generator=g, dtype=dtype) for g in generators])
    return out.to(device)


def rand(generators: Sequence[torch.Generator], shape: Sequence[int], *,
         device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[N, *shape] uniforms on [0, 1), row k from generators[k]."""
    out = torch.stack([torch.rand(tuple(shape), generator=g, dtype=dtype) for g in generators])
    return out.to(device)
