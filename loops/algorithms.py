"""Training algorithms A(.) written once against the backend protocol.

standard    Algorithm 2: train on D^t, sample from s_theta.
sims        Algorithm 1: train base on D^t; draw n_s samples S from it; fine-tune a copy of the
            base on S for budget B; sample with s = (1 + w) s_base - w s_aux   (Eq. 5).
sims-param  Eq. 6: sample from theta = (1 + w) theta_base - w theta_aux.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from loops.config import AlgoConfig, LoopConfig
from loops.protocol import Backend
from loops.rng import SeedStreams, StreamKeys


@dataclass
class Trained:
    """What A(D^t) hands back: the generative model G^t, and what the next generation may reuse."""

    backend: Backend
    model: Any                 # the base model: warm starts continue from it
    guide: Any = None          # SIMS auxiliary model, if any
    omega: float = 0.0         # guidance weight used with `guide`
    sampling_model: Any = None  # a parameter-space combination to sample from instead of `model`

    def sample(self, n: int, keys: StreamKeys) -> torch.Tensor:
        if self.sampling_model is not None:
            return self.backend.sample(self.sampling_model, n, keys)
        return self.backend.sample(self.model, n, keys, guide=self.guide, omega=self.omega)


@dataclass
class Standard:
    """Algorithm 2 of the SIMS paper."""

    epochs: float = LoopConfig.epochs
    warm_start: bool = LoopConfig.warm_start  # start generation t from G^{t-1}'s weights, not a fresh init

    def train_base(self, backend: Backend, data: torch.Tensor, streams: SeedStreams,
                   generation: int, previous: Trained | None):
        if self.warm_start and previous is not None:
            start = previous.model
        else:
            start = backend.init(streams.keys("init", generation))
        return backend.train(start, data, self.epochs, streams.keys("train", generation))

    def __call__(self, backend: Backend, data: torch.Tensor, streams: SeedStreams,
                 generation: int, previous: Trained | None = None) -> Trained:
        return Trained(backend, self.train_base(backend, data, streams, generation, previous))

    def carried(self, trained: Trained) -> Any:
        """What of G^t generation t + 1 reads (`previous`): the base model when warm-starting
        (with any optimizer state it carries), else nothing. A resumed loop gets exactly this back."""
        return trained.model if self.warm_start else None


@dataclass
class Sims(Standard):
    """Algorithm 1 of the SIMS paper, function-space guidance (Eq. 5)."""

    omega: float = AlgoConfig.omega
    n_aux: int = AlgoConfig.n_aux              # n_s = |S|, the auxiliary synthetic set
    aux_epochs: float = AlgoConfig.aux_epochs  # training budget B, in epochs over S

    def auxiliary(self, backend: Backend, base, streams: SeedStreams, generation: int):
        synthetic = backend.sample(base, self.n_aux, streams.keys("aux-sample", generation))
        # a backend may start the fine-tune its own way (toy DDPM: continue the base's Adam)
        tune = getattr(backend, "finetune", backend.train)
        return tune(base, synthetic, self.aux_epochs, streams.keys("finetune", generation))

    def __call__(self, backend: Backend, data: torch.Tensor, streams: SeedStreams,
                 generation: int, previous: Trained | None = None) -> Trained:
        base = self.train_base(backend, data, streams, generation, previous)
        if self.omega == 0:   # Eq. 5 at omega = 0 is the base model: the auxiliary is never read
            return Trained(backend, base)
        aux = self.auxiliary(backend, base, streams, generation)
        return Trained(backend, base, guide=aux, omega=self.omega)


@dataclass
class SimsParam(Sims):
    """SIMS in parameter space (Eq. 6): theta = (1 + w) theta_base - w theta_aux."""

    def __call__(self, backend: Backend, data: torch.Tensor, streams: SeedStreams,
                 generation: int, previous: Trained | None = None) -> Trained:
        base = self.train_base(backend, data, streams, generation, previous)
        aux = self.auxiliary(backend, base, streams, generation)
        combined = backend.combine([base, aux], [1.0 + self.omega, -self.omega])
        return Trained(backend, base, sampling_model=combined)


ALGORITHM_CLASSES = {"standard": Standard, "sims": Sims, "sims-param": SimsParam}


def make_algorithm(algo: AlgoConfig | str, loop: LoopConfig | None = None, **options) -> Standard:
    """A(.) from its configs: `algo` (name and SIMS options) and `loop` (epochs, warm start).

    Shorthand: make_algorithm("sims", epochs=3, omega=1.0) takes any AlgoConfig or LoopConfig
    field by keyword; the others keep the configs' defaults."""
    loop_fields = {k: options.pop(k) for k in ("epochs", "warm_start") if k in options}
    if isinstance(algo, str):
        algo = AlgoConfig(name=algo, **options)
    elif options:
        raise TypeError(f"unexpected options {', '.join(options)} beside an AlgoConfig")
    algo.validate()
    loop = LoopConfig(**loop_fields) if loop is None else loop
    common = dict(epochs=float(loop.epochs), warm_start=loop.warm_start)
    if algo.name == "standard":
        return Standard(**common)
    return ALGORITHM_CLASSES[algo.name](**common, omega=algo.omega, n_aux=algo.n_aux,
                                        aux_epochs=algo.aux_epochs)
