"""DDPM noise schedules (Ho et al. 2020; Nichol & Dhariwal 2021), indexed t = 0..T with alpha_bar_0 = 1."""
from __future__ import annotations

import math

import torch

from toy.config import SCHEDULES


def alpha_bar(schedule: str, T: int, *, beta_start: float | None = None,
              beta_end: float | None = None, s: float = 0.008) -> torch.Tensor:
    """alpha_bar_t for t = 0..T (float64, [T + 1]).

    cosine: f(u) = cos^2((u + s) / (1 + s) * pi / 2) on the grid u = t / (T + 1), normalised by
            f(0); the grid stops short of u = 1 so that alpha_bar_T > 0 (no beta clipped to 1).
    linear: beta_t evenly spaced from beta_start to beta_end; by default the values of Ho et al.
            (1e-4, 0.02 at T = 1000) rescaled by 1000 / T so short chains still reach noise.
    """
    if T < 1:
        raise ValueError(f"T must be positive, got {T}")
    if schedule == "cosine":
        u = torch.arange(T + 1, dtype=torch.float64) / (T + 1)
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return f / f[0]
    if schedule == "linear":
        scale = 1000.0 / T
        b0 = beta_start if beta_start is not None else 1e-4 * scale
        b1 = beta_end if beta_end is not None else min(0.02 * scale, 0.999)
        betas = torch.linspace(b0, b1, T, dtype=torch.float64)
        return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")


def betas_from_alpha_bar(ab: torch.Tensor, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} for t = 1..T, with beta_0 = 0 in front."""
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)
    return torch.cat([torch.zeros(1, dtype=ab.dtype), betas])
