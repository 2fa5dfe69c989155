"""Heun's 2nd-order sampler, Karras et al. 2022 Algorithm 2 (σ(t) = t, s(t) = 1), line by line.

`denoise(x, sigma)` is any denoiser D(x; σ) (a network, an exact formula, or SIMS guidance).
Randomness comes from `ImageNoise`: one counter-based stream per image (loops/rng.py), drawn on
the device, so an image's numbers (its latent and its churn noise) never depend on which other
images share its batch.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from loops.rng import StreamKeys, derive_keys

DenoiseFn = Callable[[torch.Tensor, float], torch.Tensor]


def sigma_steps(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
                rho: float = 7.0) -> torch.Tensor:
    """σ_0 > ... > σ_{N-1}, σ_N = 0:  σ_i = (σ_max^(1/ρ) + i/(N-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ. float64 [N + 1]."""
    if num_steps < 2:
        raise ValueError(f"the Heun sampler needs at least 2 steps, got {num_steps}")
    i = torch.arange(num_steps, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


class ImageNoise:
    """Per-image random streams: image j's latent and churn noise come from its own stream key.

    The i-th call of `randn` draws numbers i * prod(shape) .. of every image's normal stream, so a
    batch of images, or a subset of it, gets the numbers each image would get alone.
    `keys_or_seeds`: a StreamKeys with one key per image, or integer seeds (hashed into keys).
    """

    def __init__(self, keys_or_seeds: StreamKeys | Sequence[int], shape: Sequence[int],
                 device="cpu", dtype=torch.float32):
        if not isinstance(keys_or_seeds, StreamKeys):
            seeds = np.asarray(list(keys_or_seeds), dtype=np.int64).astype(np.uint64)
            keys_or_seeds = StreamKeys(torch.from_numpy(derive_keys(seeds).view(np.int64).copy()))
        self.keys, self.calls = keys_or_seeds, 0
        self.shape, self.device, self.dtype = tuple(shape), device, dtype

    @classmethod
    def from_keys(cls, keys: StreamKeys, n: int, shape, device="cpu", dtype=torch.float32):
        """n image streams split from one member's stream `keys` (length 1)."""
        return cls(keys.split(n), shape, device, dtype)

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, start: int, stop: int) -> "ImageNoise":
        """Images start .. stop - 1, continuing from this object's position in their streams."""
        out = ImageNoise(self.keys[start:stop], self.shape, self.device, self.dtype)
        out.calls = self.calls
        return out

    def randn(self) -> torch.Tensor:
        """The next standard normal draw of every image, [B, *shape] (on `device`)."""
        draw = self.dtype if self.dtype in (torch.float32, torch.float64) else torch.float32
        z = self.keys.randn(self.shape, offset=self.calls * math.prod(self.shape), dtype=draw,
                            device=self.device)
        self.calls += 1
        return z.to(self.dtype)


@torch.no_grad()
def heun_sampler(denoise: DenoiseFn, noise: ImageNoise, num_steps: int = 18,
                 sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 S_churn: float = 0.0, S_min: float = 0.0, S_max: float = float("inf"),
                 S_noise: float = 1.0) -> torch.Tensor:
    """Algorithm 2 of Karras et al. 2022. Returns x_N [B, *shape], B = len(noise).

    num_steps: N; sigma_min, sigma_max, rho: the σ_i schedule; S_churn, S_min, S_max, S_noise: the
    stochastic "churn" (S_churn = 0 is the deterministic probability-flow ODE solver).
    """
    t_steps = sigma_steps(num_steps, sigma_min, sigma_max, rho).tolist()
    x_next = noise.randn() * t_steps[0]                                            # x_0 ~ N(0, t_0² I)
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_min <= t_cur <= S_max else 0.0
        t_hat = t_cur + gamma * t_cur                                              # t̂_i = t_i + γ_i t_i
        if gamma > 0:                                                              # x̂_i = x_i + sqrt(t̂_i² - t_i²) ε_i
            x_hat = x_cur + math.sqrt(t_hat ** 2 - t_cur ** 2) * S_noise * noise.randn()
        else:
            x_hat = x_cur
        d_cur = (x_hat - denoise(x_hat, t_hat)) / t_hat                            # d_i = (x̂_i - D(x̂_i; t̂_i)) / t̂_i
        x_next = x_hat + (t_next - t_hat) * d_cur                                  # Euler step
        if t_next != 0:                                                            # 2nd-order correction
            d_prime = (x_next - denoise(x_next, t_next)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


def sample_images(denoise: DenoiseFn, noise: ImageNoise, batch_size: int, **sampler) -> torch.Tensor:
    """`heun_sampler` over `noise` in batches of at most batch_size images (results do not depend on it)."""
    parts = [heun_sampler(denoise, noise.subset(s, s + batch_size), **sampler)
             for s in range(0, len(noise), batch_size)]
    return torch.cat(parts)
