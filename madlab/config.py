"""`RunConfig`: every option of one run, validated, resolved and hashable.

The config is flat on purpose: a sweep can vary any field by name, and every field becomes a
column of the results table.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from analysis.distances import METRICS
from loops.algorithms import ALGORITHMS
from loops.kinds import LOOP_KINDS
from toy.ddpm import ACTIVATIONS, LR_SCHEDULES, TIME_EMBEDDINGS, VARIANCES, DDPMConfig
from toy.gaussian_fit import ESTIMATORS
from toy.schedules import SCHEDULES
from toy.targets import TARGETS

BACKENDS = ("toy-ddpm", "gaussian")


class ConfigError(ValueError):
    """Bad user input: reported as one line on stderr with exit code 2."""


@dataclass
class RunConfig:
    # the loop
    loop: str = "augment"             # fully-synthetic | augment | fresh | accumulate
    algo: str = "sims"                # standard | sims | sims-param
    omega: float = 3.0                # SIMS guidance weight w
    gens: int = 100                   # generations T
    seeds: int = 16                   # independent runs, vectorized
    first_seed: int = 0               # seeds are first_seed .. first_seed + seeds - 1
    n_real: int = 1000                # |D_r|
    n_synth: int = 250                # |D_s^t| per generation
    n_aux: int = 2000                 # SIMS n_s = |S|
    aux_epochs: float = 50            # SIMS budget B, epochs of fine-tuning on S
    epochs: float = 100               # epochs of base training per generation
    warm_start: bool = False          # start G^t from G^{t-1} instead of a fresh init
    backend: str = "toy-ddpm"         # toy-ddpm | gaussian
    target: str = "gaussian2d"        # gaussian2d | mixture2d
    metric: list[str] = field(default_factory=lambda: ["w2"])  # w2 | w1 | fd (one or more)
    n_eval: int = 1000                # model samples (and real samples for w1/w2) per evaluation
    device: str = "cpu"
    seed_chunk: int = 1024            # most seeds trained together in one tensor
    # toy DDPM
    T: int = 40
    schedule: str = "cosine"
    width: int = 64
    depth: int = 2
    time_embedding: str = "scaled"
    layer_norm: bool = True
    activation: str = "relu"
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "linear"
    lr_end_factor: float = 0.01
    variance: str = "beta"
    # Gaussian fit
    estimator: str = "mle"
    sampling_bias: float = 1.0        # lambda: sample N(mu, lambda Sigma)

    # ------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        def choice(name, options):
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(f"unknown {name.replace('_', ' ')} {value!r}; choose one of "
                                  f"{', '.join(options)}")

        choice("loop", LOOP_KINDS)
        choice("algo", ALGORITHMS)
        choice("backend", BACKENDS)
        choice("target", tuple(TARGETS))
        choice("schedule", SCHEDULES)
        choice("time_embedding", TIME_EMBEDDINGS)
        choice("activation", tuple(ACTIVATIONS))
        choice("lr_schedule", LR_SCHEDULES)
        choice("variance", VARIANCES)
        choice("estimator", ESTIMATORS)
        if isinstance(self.metric, str):
            self.metric = [m for m in self.metric.split(",") if m]
        if not self.metric:
            raise ConfigError("give at least one metric")
        for m in self.metric:
            if m not in METRICS:
                raise ConfigError(f"unknown metric {m!r}; choose one of {', '.join(METRICS)}")
        for name in ("gens", "seeds", "n_real", "n_synth", "n_aux", "n_eval", "T", "width",
                     "batch_size", "seed_chunk"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("epochs", "aux_epochs", "lr", "sampling_bias"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value == value):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number, got {value}")
        if not isinstance(self.omega, (int, float)) or self.omega != self.omega:
            raise ConfigError(f"omega must be a number, got {self.omega!r}")
        if self.first_seed < 0:
            raise ConfigError(f"first-seed must be non-negative, got {self.first_seed}")
        if self.depth < 0:
            raise ConfigError(f"depth must be non-negative, got {self.depth}")
        if self.n_eval < 2 and "fd" in self.metric:
            raise ConfigError("fd needs n-eval >= 2")
        if self.device.startswith("cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r} asked for, but torch sees no CUDA device")
        elif self.device not in ("cpu", "mps"):
            raise ConfigError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N")
        return self

    def ddpm(self) -> DDPMConfig:
        return DDPMConfig(T=self.T, schedule=self.schedule, width=self.width, depth=self.depth,
                          time_embedding=self.time_embedding, layer_norm=self.layer_norm,
                          activation=self.activation, batch_size=self.batch_size, lr=self.lr,
                          lr_schedule=self.lr_schedule, lr_end_factor=self.lr_end_factor,
                          variance=self.variance, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that change the numbers (device and chunking only change speed)."""
        d = self.to_dict()
        for key in ("device", "seed_chunk"):
            d.pop(key)
        return d

    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))
