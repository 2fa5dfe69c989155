"""`Loop`: runs a self-consuming loop of any kind with any A(.) on any backend, N seeds at once."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import torch

from loops.algorithms import Standard, Trained
from loops.kinds import LOOP_KINDS, draws_fresh_real, keeps_all_synthetic, training_set
from loops.protocol import Backend, Target
from loops.rng import SeedStreams

# evaluate(samples [N, n, ...], generation) -> {metric name: values [N]}
Evaluate = Callable[[torch.Tensor, int], Mapping[str, torch.Tensor]]


@dataclass
class GenerationRecord:
    """What one generation t produced, for all N seeds."""

    generation: int
    metrics: dict[str, torch.Tensor]          # metric -> [N] dist(G^t, p_r) per seed
    train_size: int                           # |D^t|
    seconds: dict[str, float] = field(default_factory=dict)  # train / synth / eval wall time
    model: Trained | None = None              # G^t itself


@dataclass
class Loop:
    """G^1 = A(D_r); G^t = A(D^t) with D^t formed by `kind` (see loops.kinds)."""

    kind: str
    algorithm: Standard
    backend: Backend
    target: Target
    n_real: int        # |D_r|
    n_synth: int       # |D_s^t| per generation
    generations: int
    n_eval: int        # model samples drawn per seed per generation to measure the distance

    def __post_init__(self):
        if self.kind not in LOOP_KINDS:
            raise ValueError(f"unknown loop kind {self.kind!r}; choose one of {', '.join(LOOP_KINDS)}")
        for name in ("n_real", "n_synth", "generations", "n_eval"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def run(self, streams: SeedStreams, evaluate: Evaluate, *,
            keep_models: bool = False) -> Iterator[GenerationRecord]:
        """Yield one record per generation t = 1..generations."""
        real = self.target.sample(self.n_real, streams.keys("real", 1))
        synthetic: list[torch.Tensor] = []
        previous: Trained | None = None
        for t in range(1, self.generations + 1):
            if t > 1 and draws_fresh_real(self.kind):
                real = self.target.sample(self.n_real, streams.keys("real", t))
            data = training_set(self.kind, t, real, synthetic)

            tick = time.perf_counter()
            model = self.algorithm(self.backend, data, streams, t, previous)
            trained = time.perf_counter()
            if t < self.generations:  # the last generation feeds no one
                d_s = model.sample(self.n_synth, streams.keys("synth", t))
                synthetic = synthetic + [d_s] if keeps_all_synthetic(self.kind) else [d_s]
            synthesized = time.perf_counter()
            samples = model.sample(self.n_eval, streams.keys("eval", t))
            metrics = {k: v.detach().cpu() for k, v in evaluate(samples, t).items()}
            evaluated = time.perf_counter()

            yield GenerationRecord(
                generation=t, metrics=metrics, train_size=int(data.shape[1]),
                seconds={"train": trained - tick, "synth": synthesized - trained,
                         "eval": evaluated - synthesized},
                model=model if keep_models else None)
            previous = model
