"""Gaussian kernel density estimation backend (Kazdan et al. 2024 study KDEs beside Gaussian fits).

"Training" keeps each seed's n points x_i and a kernel covariance K; the model is the mixture
(1/n) sum_i N(x_i, K), sampled exactly: pick a point uniformly, add N(0, K) noise. Bandwidth:

  scott      K = n^(-2/(d+4)) Sigma_hat          (Sigma_hat: the data's unbiased covariance; scipy's rule)
  silverman  K = (n (d+2) / 4)^(-2/(d+4)) Sigma_hat
  fixed      K = h^2 I

The model's covariance is C = Sigma_mle(data) + K, so a loop adds K every generation where the
Gaussian fit only shrinks: in the fully synthetic loop E[C_t] = c_m E[C_{t-1}] + h^2 I with a fixed
bandwidth (a fixed point m h^2 I: variance grows instead of collapsing), and
E[C_t] = (c_m + f^2) E[C_{t-1}] with a rule of factor f^2 = K / Sigma_hat (geometric growth when
f^2 > 1/m) (`fully_synthetic_cov`).

SIMS is not defined here: a KDE's parameters are its data points, which the auxiliary fit on its
own samples does not share (no Eq. 6), and p_base^(1+w) / p_aux^w of two mixtures has no exact
sampler (no Eq. 5). madlab.config refuses --algo sims and sims-param with --backend kde.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from loops.rng import StreamKeys

BANDWIDTHS = ("scott", "silverman", "fixed")
Model = tuple[torch.Tensor, torch.Tensor]   # (points [N, n, d], kernel covariance K [N, d, d]), float64


def bandwidth_factor(rule: str, n: int, d: int) -> float:
    """f^2 with K = f^2 Sigma_hat for the rules (scipy.stats.gaussian_kde's covariance factor, squared)."""
    if rule == "scott":
        return n ** (-2.0 / (d + 4))
    if rule == "silverman":
        return (n * (d + 2) / 4.0) ** (-2.0 / (d + 4))
    raise ValueError(f"unknown bandwidth rule {rule!r}; choose one of {', '.join(BANDWIDTHS)}")


def fully_synthetic_cov(gens: int, n_real: int, n_synth: int, rule: str, h: float, tr_sigma: float,
                        d: int = 2) -> torch.Tensor:
    """E[tr C_t] / tr Sigma for t = 1..gens in the fully synthetic loop, exactly: C_t = Sigma_mle + K,
    E[Sigma_mle of m samples of model t-1] = c_m C_{t-1}; K = h^2 I (fixed) or f^2 Sigma_hat (a rule)."""
    out, c = [], None
    for t in range(1, gens + 1):
        n = n_real if t == 1 else n_synth
        prev = 1.0 if t == 1 else c
        mle = (n - 1) / n * prev
        if rule == "fixed":
            c = mle + d * h ** 2 / tr_sigma
        else:
            c = mle * (1 + bandwidth_factor(rule, n, d) * n / (n - 1))
        out.append(c)
    return torch.tensor(out, dtype=torch.float64)


@dataclass
class KDE:
    """Backend (see loops.protocol) whose model is a per-seed Gaussian KDE."""

    bandwidth: str = "scott"   # scott | silverman | fixed
    h: float = 0.1             # the fixed bandwidth: K = h^2 I
    device: str = "cpu"

    def __post_init__(self):
        if self.bandwidth not in BANDWIDTHS:
            raise ValueError(f"unknown bandwidth rule {self.bandwidth!r}; choose one of {', '.join(BANDWIDTHS)}")
        if not self.h > 0:
            raise ValueError(f"the fixed bandwidth h must be positive, got {self.h}")

    def init(self, keys: StreamKeys) -> None:
        return None

    def train(self, model, data: torch.Tensor, epochs: float, keys: StreamKeys) -> Model:
        x = data.to(torch.float64).reshape(data.shape[0], data.shape[1], -1)
        n, d = x.shape[1], x.shape[2]
        if self.bandwidth == "fixed":
            K = (self.h ** 2) * torch.eye(d, dtype=x.dtype, device=x.device).expand(x.shape[0], d, d)
            return x.clone(), K.clone()
        if n < 2:
            raise ValueError("a bandwidth rule needs at least 2 points per seed")
        centred = x - x.mean(1, keepdim=True)
        cov = centred.transpose(1, 2) @ centred / (n - 1)
        return x.clone(), bandwidth_factor(self.bandwidth, n, d) * cov

    def sample(self, model: Model, n: int, keys: StreamKeys, *, guide=None, omega: float = 0.0) -> torch.Tensor:
        if guide is not None and omega != 0:
            raise ValueError("the KDE backend has no SIMS guidance (see toy.kde)")
        points, K = model
        N, m, d = points.shape
        u = keys.rand((n,), dtype=torch.float64, device=points.device)              # [N, n]
        index = (u * m).long().clamp(max=m - 1)
        centres = points.gather(1, index.unsqueeze(-1).expand(-1, -1, d))
        z = keys.randn((n, d), dtype=torch.float64, device=points.device)
        L = torch.linalg.cholesky(K + 1e-12 * torch.eye(d, dtype=K.dtype, device=K.device))
        return (centres + z @ L.transpose(1, 2)).float()

    def combine(self, models: Sequence[Model], weights: Sequence[float]) -> Model:
        raise ValueError("the KDE backend has no parameter-space combination (see toy.kde)")
