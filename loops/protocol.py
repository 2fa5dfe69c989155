"""The small protocol a model family implements so that `Loop` and A(.) can drive it.

Every tensor carries the seed (ensemble member) as its leading dimension: data is
[N, n, *event_shape]; a model is whatever the backend uses to hold N stacked models. Randomness
comes in as `StreamKeys` (loops/rng.py): one stream per seed, drawn with `keys.randn(shape,
offset=...)` / `keys.rand(...)` as [N, *shape] on any device; member k must use row k only, so
that its numbers do not depend on the other members.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from loops.rng import StreamKeys

Model = Any  # a backend's handle on an ensemble of N stacked models


@runtime_checkable
class Backend(Protocol):
    """Trains, fine-tunes and samples an ensemble of N independent models at once."""

    def init(self, keys: StreamKeys) -> Model:
        """Fresh, untrained ensemble; member k initialised from stream keys[k]."""

    def train(self, model: Model, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> Model:
        """Return a copy of `model` trained for `epochs` passes over data [N, n, ...], member k's
        minibatches and noise from stream keys[k].

        `model` is the starting point: `init(...)` trains from scratch, a trained model
        fine-tunes. The input model is never modified.
        """

    def sample(self, model: Model, n: int, keys: StreamKeys, *,
               guide: Model | None = None, omega: float = 0.0) -> torch.Tensor:
        """Draw [N, n, ...] samples, member k's from stream keys[k]. With a guidance partner `guide`
        and weight omega the sampler follows (1 + omega) * s_model - omega * s_guide (SIMS, Eq. 5);
        omega == 0 must not evaluate the partner at all."""

    def combine(self, models: Sequence[Model], weights: Sequence[float]) -> Model:
        """Parameter-space combination sum_i weights[i] * theta_i (SIMS, Eq. 6)."""

    # Optional: finetune(model, data, epochs, keys) -> Model, the SIMS auxiliary fine-tune of a
    # trained base (same contract as `train`). Sims calls it when the backend has it (the toy
    # DDPM may continue the base's optimizer there), else `train`. Warm starts always `train`.


@runtime_checkable
class Target(Protocol):
    """The real distribution p_r."""

    event_shape: tuple[int, ...]

    def sample(self, n: int, keys: StreamKeys) -> torch.Tensor:
        """[N, n, *event_shape] real samples, member k drawn from stream keys[k], on the keys'
        device."""
