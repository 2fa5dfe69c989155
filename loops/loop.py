"""`Loop`: runs a self-consuming loop of any kind with any A(.) on any backend, N seeds at once."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch

from loops.algorithms import Standard, Trained
from loops.kinds import LOOP_KINDS, draws_fresh_real, keeps_all_synthetic, training_set
from loops.protocol import Backend, Target
from loops.rng import SeedStreams

# evaluate(samples [N, n, ...], generation) -> {metric name: values [N]}
Evaluate = Callable[[torch.Tensor, int], Mapping[str, torch.Tensor]]


@dataclass
class LoopState:
    """Everything generation t leaves for generation t + 1, so that a loop stopped after t resumes
    there and ends bit-identical to one that never stopped. The random streams need nothing: every
    draw is a pure function of (seed, purpose, generation, step) (loops/rng.py), and the real set
    D_r (or D_r^t) is drawn again from its own stream."""

    generation: int                           # t: the last finished generation
    synthetic: list[torch.Tensor]             # D_s^1..D_s^t as the loop kind keeps them (accumulate:
                                              # all, else the last; none after the last generation)
    carried: Any = None                       # what of G^t the next generation starts from
                                              # (A(.)'s `carried`: the base model for warm starts)


@dataclass
class GenerationRecord:
    """What one generation t produced, for all N seeds."""

    generation: int
    metrics: dict[str, torch.Tensor]          # metric -> [N] dist(G^t, p_r) per seed
    train_size: int                           # |D^t|
    seconds: dict[str, float] = field(default_factory=dict)  # train / synth / eval wall time
    model: Trained | None = None              # G^t itself
    state: LoopState | None = None            # what generation t + 1 needs: checkpoint this to resume


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

    def run(self, streams: SeedStreams, evaluate: Evaluate, *, keep_models: bool = False,
            resume: LoopState | None = None) -> Iterator[GenerationRecord]:
        """Yield one record per generation t = 1..generations, or t = resume.generation + 1..
        generations when resuming from the state a record of an earlier run carried."""
        first = 1 if resume is None else resume.generation + 1
        if not 1 <= first <= self.generations + 1:
            raise ValueError(f"cannot resume after generation {first - 1} of a {self.generations}-"
                             "generation loop")
        fresh = draws_fresh_real(self.kind)
        real = self.target.sample(self.n_real, streams.keys("real", 1)) if first == 1 or not fresh else None
        synthetic: list[torch.Tensor] = [] if resume is None else list(resume.synthetic)
        previous: Trained | None = None
        if resume is not None and resume.carried is not None:
            previous = Trained(self.backend, resume.carried)
        for t in range(first, self.generations + 1):
            if t > 1 and fresh:
                real = self.target.sample(self.n_real, streams.keys("real", t))
            data = training_set(self.kind, t, real, synthetic, streams.keys("subsample", t))

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

            last = t == self.generations
            yield GenerationRecord(
                generation=t, metrics=metrics, train_size=int(data.shape[1]),
                seconds={"train": trained - tick, "synth": synthesized - trained,
                         "eval": evaluated - synthesized},
                model=model if keep_models else None,
                state=LoopState(t, [] if last else list(synthetic),
                                None if last else self.algorithm.carried(model)))
            previous = model
