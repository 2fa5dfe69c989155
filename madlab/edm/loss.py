"""Training losses of Karras et al. 2022 (Table 1): E_σ,y,n [λ(σ) ||D_θ(y + n; σ) - y||²].

EDM: ln σ ~ N(P_mean, P_std²), λ(σ) = (σ² + σ_data²)/(σ σ_data)².
VP:  t ~ U(ε_t, 1), σ = σ(t) of the VP SDE, λ(σ) = 1/σ².
The squared error is averaged over pixels (the paper sums; only the learning rate's scale differs).
Noise is drawn by the caller (from the seed's own generator) and passed in.
"""
from __future__ import annotations

import torch

from madlab.edm.precond import Denoiser, loss_weight, vp_sigma


def draw_sigma(z: torch.Tensor, u: torch.Tensor, precond: str, P_mean: float = -1.2,
               P_std: float = 1.2, epsilon_t: float = 1e-5) -> torch.Tensor:
    """Training noise levels σ [B] from standard normals z [B] (EDM) or uniforms u [B] (VP)."""
    if precond == "edm":
        return (P_mean + P_std * z).exp()
    return vp_sigma(epsilon_t + (1 - epsilon_t) * u)


def denoising_loss(D: Denoiser, y: torch.Tensor, sigma: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-image weighted loss [B]: λ(σ) mean_pixels (D(y + σ n; σ) - y)².

    y: clean images [B, ...]; sigma: [B]; n: standard normal noise shaped like y.
    """
    view = (-1,) + (1,) * (y.ndim - 1)
    denoised = D(y + sigma.view(view) * n, sigma)
    weight = loss_weight(sigma, D.precond, D.sigma_data)
    return weight * (denoised.float() - y).pow(2).flatten(1).mean(1)
