"""SIMS guidance for the toy DDPMs, Eq. 5 of the SIMS paper in noise space.

The paper mixes scores, s = (1 + w) s_base - w s_aux. A DDPM's network predicts the noise, and
s = -eps / sqrt(1 - alpha_bar_t) with the same factor for both models, so mixing the noise
predictions with the same weights is the same guidance. (madlab/edm/guidance.py is the image
backend's form, mixing denoisers.)
"""
from __future__ import annotations

import torch


def sims_eps(eps_base: torch.Tensor, eps_aux: torch.Tensor, omega) -> torch.Tensor:
    """SIMS, Eq. 5 in noise space: (1 + omega) eps_base - omega eps_aux.

    omega: a number or a 0-d tensor (the compiled sampler step passes one). Callers skip the
    auxiliary model where omega = 0 or outside the guidance interval: this is only the mix."""
    return (1 + omega) * eps_base - omega * eps_aux
