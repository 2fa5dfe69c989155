"""Data standardisation around any toy backend: the albarji/toy-diffusion notebook's recipe.

The notebook trains on x <- (x - mean) / std with one scalar mean and one scalar std over all
coordinates of its data set (`x = (x - x.mean()) / x.std()`). In a self-consuming loop the data
set is D^t, so `Standardized` recomputes the two scalars per seed on every generation's training
data, trains the wrapped backend in those coordinates, and maps samples back, x = std * x~ + mean,
before anyone else sees them (the loop's next D^t, the distance, the tail metrics).

The SIMS auxiliary model is fine-tuned in its base's coordinates (it starts from the base's
weights and Eq. 5 mixes the two noise predictions in one space), so `finetune` reuses the base's
scalars instead of computing new ones on the synthetic set. A model carries its scalars as two
more entries of its parameter dict, `data.loc` and `data.scale` ([N, 1, 1]): they travel through
checkpoints and warm starts with the weights, and Eq. 6's (1 + w) theta_base - w theta_aux leaves
them unchanged because base and auxiliary share them. std is numpy's / the notebook's: the
population standard deviation (divide by the count).
"""
from __future__ import annotations

from typing import Sequence

import torch

from loops.rng import StreamKeys
from toy.params import TrainedParams, adam_state

LOC, SCALE = "data.loc", "data.scale"


def standardization(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per seed, the scalar mean and population std over every point and coordinate of data
    [N, n, d]: two [N, 1, 1] tensors."""
    flat = data.reshape(len(data), -1)
    loc = flat.mean(-1)
    scale = flat.std(-1, correction=0)
    return loc.view(-1, 1, 1), scale.view(-1, 1, 1)


def split(model) -> tuple[TrainedParams, tuple[torch.Tensor, torch.Tensor] | None]:
    """The wrapped backend's model (its optimizer state kept) and the scalars, if it has them."""
    if LOC not in model:
        return model, None
    inner = TrainedParams({k: v for k, v in model.items() if k not in (LOC, SCALE)}, adam_state(model))
    return inner, (model[LOC], model[SCALE])


def join(inner, stats: tuple[torch.Tensor, torch.Tensor]) -> TrainedParams:
    return TrainedParams({**inner, LOC: stats[0], SCALE: stats[1]}, adam_state(inner))


class Standardized:
    """Backend (loops.protocol) that trains `inner` on standardised data and maps samples back.
    Any other attribute (config, eps, shapes, ...) is the inner backend's, in its coordinates."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def init(self, keys: StreamKeys):
        return self.inner.init(keys)

    def train(self, model, data: torch.Tensor, epochs: float, keys: StreamKeys):
        """Standardise D^t with its own scalars (a warm start's old ones are dropped), train."""
        inner, _ = split(model)
        stats = standardization(data.to(torch.float32))
        return join(self.inner.train(inner, self._forward(data, stats), epochs, keys), stats)

    def finetune(self, model, data: torch.Tensor, epochs: float, keys: StreamKeys):
        """The SIMS auxiliary fine-tune, in the base's coordinates."""
        inner, stats = split(model)
        tune = getattr(self.inner, "finetune", self.inner.train)
        return join(tune(inner, self._forward(data, stats), epochs, keys), stats)

    def sample(self, model, n: int, keys: StreamKeys, *, guide=None, omega: float = 0.0) -> torch.Tensor:
        """The wrapped sampler (with SIMS guidance in the base's coordinates), mapped back."""
        inner, stats = split(model)
        guide_inner = None if guide is None else split(guide)[0]
        x = self.inner.sample(inner, n, keys, guide=guide_inner, omega=omega)
        loc, scale = (s.to(x.device) for s in stats)
        return x * scale + loc

    def combine(self, models: Sequence, weights: Sequence[float]):
        """Eq. 6 on the weights; the scalars combine the same way (equal in base and aux, so
        they come out unchanged)."""
        parts = [split(m) for m in models]
        inner = self.inner.combine([p[0] for p in parts], weights)
        stats = tuple(sum(w * p[1][i] for p, w in zip(parts, weights)) for i in range(2))
        return join(inner, stats)

    @staticmethod
    def _forward(data: torch.Tensor, stats) -> torch.Tensor:
        loc, scale = (s.to(data.device) for s in stats)
        return (data.to(torch.float32) - loc) / scale
