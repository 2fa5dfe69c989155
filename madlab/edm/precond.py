"""Preconditioning of Karras et al. 2022, Table 1: D(x; σ) = c_skip x + c_out F(c_in x; c_noise).

`EDMPrecond` is the paper's own choice ("EDM" column); `VPPrecond` reproduces the variance
preserving model of Song et al. 2021 in the same form ("VP" column). Both wrap a raw network
F(x, c_noise) whose output has the shape of x.
"""
from __future__ import annotations


import torch
from torch import nn

PRECONDITIONINGS = ("edm", "vp")


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in, c_noise) of the EDM column of Table 1 for noise levels sigma."""
    sigma = torch.as_tensor(sigma)
    total = sigma ** 2 + sigma_data ** 2
    c_skip = sigma_data ** 2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = 1 / total.sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def vp_sigma(t: torch.Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """σ(t) = sqrt(exp(β_d t²/2 + β_min t) - 1) of the VP SDE (Table 1)."""
    t = torch.as_tensor(t)
    return torch.expm1(0.5 * beta_d * t ** 2 + beta_min * t).sqrt()


def vp_sigma_inv(sigma: torch.Tensor, beta_d: float = 19.9, beta_min: float = 0.1) -> torch.Tensor:
    """σ⁻¹(σ) = (sqrt(β_min² + 2 β_d log(1 + σ²)) - β_min) / β_d."""
    sigma = torch.as_tensor(sigma)
    return ((beta_min ** 2 + 2 * beta_d * torch.log1p(sigma ** 2)).sqrt() - beta_min) / beta_d


def vp_coefficients(sigma: torch.Tensor, M: int = 1000, beta_d: float = 19.9, beta_min: float = 0.1):
    """(c_skip, c_out, c_in, c_noise) of the VP column of Table 1."""
    sigma = torch.as_tensor(sigma)
    c_skip = torch.ones_like(sigma)
    c_out = -sigma
    c_in = 1 / (sigma ** 2 + 1).sqrt()
    c_noise = (M - 1) * vp_sigma_inv(sigma, beta_d, beta_min)
    return c_skip, c_out, c_in, c_noise


class Denoiser(nn.Module):
    """D_θ(x; σ) from a raw network F_θ(x, c_noise) and a preconditioning."""

    def __init__(self, net: nn.Module, precond: str = "edm", sigma_data: float = 0.5):
        super().__init__()
        if precond not in PRECONDITIONINGS:
            raise ValueError(f"unknown preconditioning {precond!r}; choose one of {', '.join(PRECONDITIONINGS)}")
        self.net = net            # F_θ: (x [B, C, H, W], c_noise [B]) -> [B, C, H, W]
        self.precond = precond    # edm | vp
        self.sigma_data = sigma_data  # σ_data, the data's standard deviation (EDM only)

    def coefficients(self, sigma: torch.Tensor):
        if self.precond == "edm":
            return edm_coefficients(sigma, self.sigma_data)
        return vp_coefficients(sigma)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """x [B, ...]; sigma a float or [B]."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma)
        view = (-1,) + (1,) * (x.ndim - 1)
        F_x = self.net((c_in.view(view) * x).to(torch.float32), c_noise.to(torch.float32))
        return c_skip.view(view) * x + c_out.view(view) * F_x.to(x.dtype)


def loss_weight(sigma: torch.Tensor, precond: str = "edm", sigma_data: float = 0.5) -> torch.Tensor:
    """λ(σ): EDM (σ² + σ_data²)/(σ σ_data)² = 1/c_out²;  VP 1/σ² (= 1/c_out² too)."""
    sigma = torch.as_tensor(sigma)
    if precond == "edm":
        return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    return 1 / sigma ** 2
