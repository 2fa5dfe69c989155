"""Per-seed random streams: every draw of seed k comes from seed k's own counter-based stream.

A stream is identified by (seed, purpose, generation, step); its key is a SplitMix64 hash of that
tuple (Steele et al. 2014, the seeding mix of java.util.SplittableRandom), and its numbers are
Philox4x32-10 of (key, position) (loops/philox.py). A number is a function of its key and its
position only, so seed k's numbers never depend on which other seeds share the tensor, on how the
seeds are chunked, on how a draw is cut into pieces (`offset`), nor on the device: one vectorized
call draws [N, *shape] for all seeds where the tensor lives (torch ops on a GPU, a C kernel on
the CPU, the same bits; see loops/philox.py for why CPU and CUDA agree bit for bit).

    streams = SeedStreams(range(16), device="cuda")
    keys = streams.keys("train", generation=3)        # StreamKeys: 16 keys, on the GPU
    z = keys.randn((8, 1250, 4))                       # [16, 8, 1250, 4] standard normals there
    z_next = keys.randn((8, 1250, 4), offset=z[0].numel())  # the 8 epochs after those
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from loops import philox

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
    "subsample": 10,   # accumulate-subsample: which accumulated points D^t keeps
}

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser on uint64 arrays (wrap-around arithmetic)."""
    z = z + np.uint64(_GOLDEN)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
    return z ^ (z >> np.uint64(31))


def derive_keys(seeds, *key: int) -> np.ndarray:
    """64-bit stream keys (uint64) for many `seeds` at once, each hashed with the key parts:
    h = splitmix(seed), then h = splitmix(h ^ splitmix(part)) for every part."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(seeds, dtype=np.uint64))
        for part in key:
            h = _splitmix64(h ^ _splitmix64(np.asarray([part], dtype=np.uint64)))
    return h


def derive_seed(*key: int) -> int:
    """A 63-bit integer seed from integer key parts (the first part is the run seed)."""
    return int(derive_keys([key[0]], *key[1:])[0] >> np.uint64(1))


def _signed(value: int) -> int:
    """A uint64 constant as the int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _lsr(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's >> is arithmetic)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def _splitmix64_t(z: torch.Tensor) -> torch.Tensor:
    """`_splitmix64` on int64 tensors holding the uint64 bits, on their device (int64 addition and
    multiplication wrap on every torch device; tests check it against the numpy one)."""
    z = z + _signed(_GOLDEN)
    z = (z ^ _lsr(z, 30)) * _signed(_MIX1)
    z = (z ^ _lsr(z, 27)) * _signed(_MIX2)
    return z ^ _lsr(z, 31)


class StreamKeys:
    """One stream key per seed: N seeds' streams for one (purpose, generation, step).

    Draws are pure functions of (key, kind, position): `randn(shape, offset=o)` returns numbers
    o .. o + prod(shape) - 1 of each seed's normal stream, so a draw cut into pieces at the right
    offsets equals the whole, and a seed's row equals the row it gets when drawn alone. Normals
    and uniforms, float32 and float64, are four separate streams of the same key (the kind is part
    of the Philox counter); draw one thing per key and `fold` for more.

    keys: int64 [N], each the bits of a 64-bit key. Draws land on the keys' device unless `device`
    is given (the keys are then copied there once and cached: 8 bytes per seed, never the draws).
    """

    def __init__(self, keys: torch.Tensor):
        keys = torch.as_tensor(keys)
        if keys.dtype != torch.int64 or keys.dim() != 1:
            raise ValueError("stream keys are a 1-d int64 tensor")
        self.keys = keys
        self._copies: dict[torch.device, torch.Tensor] = {keys.device: keys}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index) -> "StreamKeys":
        """The keys of some seeds: an int (one seed, still a StreamKeys of length 1), a slice, a
        sequence or tensor of indices."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.int64, device=self.keys.device)
        return StreamKeys(self.keys[index])

    def __repr__(self) -> str:
        return f"StreamKeys(N={len(self)}, device={self.device})"

    @property
    def device(self) -> torch.device:
        return self.keys.device

    def on(self, device: torch.device | str | None) -> torch.Tensor:
        """The key tensor on `device` (None: where it is), copied there once."""
        device = self.keys.device if device is None else torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._copies:
            self._copies[device] = self.keys.to(device)
        return self._copies[device]

    def to(self, device: torch.device | str) -> "StreamKeys":
        return StreamKeys(self.on(device))

    def fold(self, *parts: int) -> "StreamKeys":
        """Independent sub-streams: each key hashed with the integer parts, exactly as
        SeedStreams.keys hashes its (purpose, generation, step); computed on the keys' device."""
        h = self.keys
        for part in parts:
            h = _splitmix64_t(h ^ _signed(int(_splitmix64(np.asarray([part], dtype=np.uint64))[0])))
        return StreamKeys(h)

    def split(self, n: int) -> "StreamKeys":
        """n child streams per seed, seed-major [N * n]: child j of seed k is fold(j) of key k."""
        parts = torch.arange(n, dtype=torch.int64, device=self.keys.device)
        return StreamKeys(_splitmix64_t(self.keys.unsqueeze(1) ^ _splitmix64_t(parts)).flatten())

    def _draw(self, kind64: int, kind32: int, shape, offset: int, dtype, device) -> torch.Tensor:
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"draws are float32 or float64, got {dtype}")
        kind = kind64 if dtype == torch.float64 else kind32
        out = philox.draw(self.on(device), kind, int(offset), math.prod(shape))
        return out.view(len(self), *shape)

    def randn(self, shape: Sequence[int] | int, *, offset: int = 0,
              dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> torch.Tensor:
        """[N, *shape] standard normals: row k is numbers offset .. offset + prod(shape) - 1 of
        seed k's normal stream (Box-Muller in float64, rounded for float32: |z| <= 6.66 in
        float32, 8.57 in float64)."""
        return self._draw(philox.NORMAL64, philox.NORMAL32, shape, offset, dtype, device)

    def rand(self, shape: Sequence[int] | int, *, offset: int = 0,
             dtype: torch.dtype = torch.float32,
             device: torch.device | str | None = None) -> torch.Tensor:
        """[N, *shape] uniforms on [0, 1) (24 random bits in float32, 53 in float64), row k from
        seed k's uniform stream at positions offset .. offset + prod(shape) - 1."""
        return self._draw(philox.UNIFORM64, philox.UNIFORM32, shape, offset, dtype, device)

    def int_seeds(self) -> list[int]:
        """One 63-bit integer per seed (the key's top 63 bits), for code that must seed torch's own
        generators: module initialisation, dropout (`torch.manual_seed(...)`)."""
        return [int(k) for k in _lsr(self.keys.cpu(), 1)]

    def cpu_generators(self) -> list[torch.Generator]:
        """Escape hatch: one CPU torch.Generator per seed, seeded with `int_seeds()`, for draws that
        have no counter-based form here. Prefer randn/rand: these run on the host, one seed at a
        time."""
        return [torch.Generator().manual_seed(s) for s in self.int_seeds()]


class SeedStreams:
    """The per-seed random streams of one ensemble of runs, keyed on `device`."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.seeds = [int(s) for s in seeds]
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        self.device = torch.device(device)
        bits = derive_keys(self.seeds).view(np.int64)   # splitmix(seed), moved to the device once
        self._base = StreamKeys(torch.from_numpy(bits.copy()).to(self.device))

    def __len__(self) -> int:
        return len(self.seeds)

    def keys(self, purpose: str, generation: int = 0, step: int = 0) -> StreamKeys:
        """Every seed's stream for (purpose, generation, step): derive_keys(seeds, purpose code,
        generation, step), hashed on the device (nothing crosses from the host)."""
        return self._base.fold(PURPOSES[purpose], generation, step)

    def subset(self, index: Sequence[int]) -> "SeedStreams":
        return SeedStreams([self.seeds[i] for i in index], self.device)
