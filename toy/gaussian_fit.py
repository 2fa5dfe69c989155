"""Closed-form Gaussian-fit backend: the classic MAD analytics (Alemohammad et al. 2023).

"Training" fits (mu, Sigma) to each seed's data by maximum likelihood (divide by n) or the
unbiased estimator (divide by n - 1); sampling draws N(mu, lambda * Sigma), where lambda < 1 is
the MAD paper's sampling bias. SIMS guidance of two Gaussians multiplies densities,
p ∝ p_base^(1 + w) / p_aux^w, the exact model whose score is (1 + w) s_base - w s_aux; its
precision (1 + w) P_base - w P_aux is floored at a small positive eigenvalue where it is not
positive definite.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from loops.rng import StreamKeys

from toy.config import ESTIMATORS
Fit = tuple[torch.Tensor, torch.Tensor]  # (mu [N, d], Sigma [N, d, d]), float64


def _psd_floor(S: torch.Tensor, floor: float = 1e-9) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((S + S.transpose(-1, -2)) / 2)
    floor_abs = floor * vals.abs().amax(-1, keepdim=True).clamp(min=1.0)
    return vecs @ torch.diag_embed(vals.clamp(min=0) + floor_abs) @ vecs.transpose(-1, -2)


@dataclass
class GaussianFit:
    """Backend (see loops.protocol) whose model is a per-seed Gaussian (mu, Sigma)."""

    estimator: str = "mle"   # mle | unbiased
    bias: float = 1.0        # sampling bias lambda: sample N(mu, lambda * Sigma)
    device: str = "cpu"

    def __post_init__(self):
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}; choose one of {', '.join(ESTIMATORS)}")
        if not self.bias > 0:
            raise ValueError(f"sampling bias lambda must be positive, got {self.bias}")

    def init(self, keys: StreamKeys) -> None:
        return None

    def train(self, model, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> Fit:
        x = data.to(torch.float64)
        n = x.shape[1]
        if n < 2:
            raise ValueError("fitting a Gaussian needs at least 2 points per seed")
        mu = x.mean(1)
        centred = x - mu.unsqueeze(1)
        dof = n if self.estimator == "mle" else n - 1
        return mu, centred.transpose(1, 2) @ centred / dof

    def sample(self, model: Fit, n: int, keys: StreamKeys, *,
               guide: Fit | None = None, omega: float = 0.0) -> torch.Tensor:
        mu, S = model
        if guide is not None and omega != 0:
            mu, S = self.guided(model, guide, omega)
        L = torch.linalg.cholesky(_psd_floor(self.bias * S))
        z = keys.randn((n, mu.shape[-1]), dtype=torch.float64, device=mu.device)
        return (mu.unsqueeze(1) + z @ L.transpose(1, 2)).float()

    @staticmethod
    def guided(model: Fit, guide: Fit, omega: float) -> Fit:
        """The Gaussian ∝ N(mu_b, S_b)^(1 + w) / N(mu_a, S_a)^w."""
        (mu_b, S_b), (mu_a, S_a) = model, guide
        P_b, P_a = torch.linalg.inv(_psd_floor(S_b)), torch.linalg.inv(_psd_floor(S_a))
        P = _psd_floor((1 + omega) * P_b - omega * P_a)
        h = (1 + omega) * (P_b @ mu_b.unsqueeze(-1)) - omega * (P_a @ mu_a.unsqueeze(-1))
        S = torch.linalg.inv(P)
        return (S @ h).squeeze(-1), S

    def combine(self, models: Sequence[Fit], weights: Sequence[float]) -> Fit:
        mu = sum(w * m[0] for m, w in zip(models, weights))
        S = sum(w * m[1] for m, w in zip(models, weights))
        return mu, _psd_floor(S)
