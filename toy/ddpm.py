"""The toy DDPM backend, vectorized across seeds: N independent MLP denoisers as stacked tensors.

Model eps_theta(x_t, t) predicts the noise (Ho et al. 2020, Eq. 14); sampling is DDPM ancestral
sampling (Algorithm 2). SIMS guidance mixes noise predictions, which equals mixing scores since
s = -eps / sqrt(1 - alpha_bar_t):  eps = (1 + w) eps_base - w eps_aux (Eq. 5).

`ToyDDPM` is the backend of loops.protocol: the noise schedule and the protocol's methods. The
parts, one module each:
  toy/network.py   eps_theta, written plainly (`eps`), and its initialisation
  toy/fastpath.py  the same network on packed parameters, hand-written backward, fused kernels
  toy/training.py  Algorithm 1 over blocks of seeds, Adam on one flat buffer
  toy/sampling.py  Algorithm 2 over blocks of seeds x points, SIMS-guided (toy/guidance.py)
Speed and how it was measured: docs/performance.md.
"""
from __future__ import annotations

from typing import Sequence

import torch

from loops.rng import StreamKeys
from toy import sampling, training
from toy.config import REFERENCE_LEARNERS, DDPMConfig  # `from toy.ddpm import DDPMConfig` works
from toy.fastpath import FastResMLP
from toy.network import Params
from toy.params import TrainedParams, adam_state
from toy.schedules import alpha_bar, betas_from_alpha_bar

RANDOM_CHUNK = 8  # epochs (training) or steps (sampling) drawn per call (memory only: draws are by offset)


class ToyDDPM(FastResMLP):
    """Backend (see loops.protocol) holding N stacked residual-MLP noise predictors."""

    def __init__(self, config: DDPMConfig | None = None, dim: int = 2):
        config = (config or DDPMConfig()).validate()
        if config.learner in REFERENCE_LEARNERS:
            raise ValueError(f"the {config.learner} learner runs on toy.reference.ReferenceDDPM "
                             "(madlab.runner.build_backend picks it), not on the fast path")
        super().__init__(config, dim)
        c = self.config
        ab = alpha_bar(c.schedule, c.T, beta_start=c.beta_start, beta_end=c.beta_end)
        betas = betas_from_alpha_bar(ab)
        ab = torch.cat([ab[:1], torch.cumprod(1 - betas[1:], 0)])  # consistent with clipped betas
        posterior = torch.zeros_like(betas)
        posterior[1:] = (1 - ab[:-1]) / (1 - ab[1:]) * betas[1:]
        to = dict(device=self.device, dtype=torch.float32)
        self.alpha_bar = ab.to(**to)
        self.betas = betas.to(**to)
        self.sigmas = (betas if c.variance == "beta" else posterior).sqrt().to(**to)

    # init(keys): toy/network.py (nn.Linear's initialisation)

    def train(self, model: Params, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> TrainedParams:
        """Adam on sum_k mean_batch ||eps - eps_theta_k(sqrt(ab) x0 + sqrt(1 - ab) eps, t)||^2 / d,
        from `model`'s weights with a fresh optimizer (moments zero, lr schedule from lr). The
        result carries its Adam state (`.adam`) for a fine-tune that continues it."""
        return training.train(self, model, data, epochs, keys, None, RANDOM_CHUNK)

    def finetune(self, model: Params, data: torch.Tensor, epochs: float,
                 keys: StreamKeys) -> TrainedParams:
        """The SIMS auxiliary fine-tune of a trained `model` (loops.algorithms.Sims): `train` when
        config.finetune is "restart"; with "continue", Adam goes on from the state `model`
        carries (its moments and step count) at the lr where its schedule ended, as one
        uninterrupted optimizer would."""
        if self.config.finetune == "restart":
            return self.train(model, data, epochs, keys)
        carry = adam_state(model)
        if carry is None:
            raise ValueError("finetune='continue' needs a model trained by ToyDDPM.train (it "
                             "carries the Adam state); this one carries none")
        return training.train(self, model, data, epochs, keys, carry, RANDOM_CHUNK)

    def sample(self, model: Params, n: int, keys: StreamKeys, *,
               guide: Params | None = None, omega: float = 0.0) -> torch.Tensor:
        """DDPM ancestral sampling; with `guide`, eps = (1 + omega) eps_model - omega eps_guide
        at the reverse steps guide_t_min <= t <= guide_t_max (the guide is not evaluated at the
        others; an empty interval is standard sampling)."""
        return sampling.sample(self, model, n, keys, guide, omega, RANDOM_CHUNK)

    def combine(self, models: Sequence[Params], weights: Sequence[float]) -> Params:
        return {k: sum(w * m[k] for m, w in zip(models, weights)) for k in models[0]}
