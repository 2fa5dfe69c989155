"""SIMS guidance as a denoiser: D = D_base + ω (D_base - D_aux) = (1 + ω) D_base - ω D_aux.

Since the score is (D(x; σ) - x)/σ², this is exactly the paper's s = (1 + ω) s_base - ω s_aux
(Eq. 5). Optionally guidance acts only for σ inside [sigma_lo, sigma_hi] (Kynkäänniemi et al.
2024); outside it, and whenever ω = 0, only the base denoiser is evaluated.
"""
from __future__ import annotations

from typing import Callable

import torch

Denoise = Callable[[torch.Tensor, float], torch.Tensor]


class SimsGuidance:
    """One denoiser made of two."""

    def __init__(self, base: Denoise, aux: Denoise | None, omega: float,
                 sigma_lo: float = 0.0, sigma_hi: float = float("inf")):
        if omega != 0 and aux is None:
            raise ValueError("guidance with omega != 0 needs an auxiliary denoiser")
        if not sigma_lo <= sigma_hi:
            raise ValueError(f"empty guidance interval [{sigma_lo}, {sigma_hi}]")
        self.base = base          # D_base, the model trained on D^t
        self.aux = aux            # D_aux, the base fine-tuned on its own samples
        self.omega = omega        # ω, guidance strength
        self.sigma_lo = sigma_lo  # guidance acts for sigma_lo <= σ <= sigma_hi
        self.sigma_hi = sigma_hi

    def active(self, sigma: float) -> bool:
        return self.omega != 0 and self.sigma_lo <= float(sigma) <= self.sigma_hi

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        D_base = self.base(x, sigma)
        if not self.active(sigma):
            return D_base
        return D_base + self.omega * (D_base - self.aux(x, sigma))
