"""Is the toy DDPM's sampler itself a source of outliers? Ancestral sampling with the EXACT eps of
the noised paper Gaussian (no network): eps(x_t, t) = sqrt(1 - ab_t) C_t^-1 x_t with
C_t = ab_t Sigma + (1 - ab_t) I, the schedule and update of toy/ddpm.py, sigma_t^2 = beta_t
(madlab's default) or beta-tilde_t. Prints the share of 4 M samples beyond Mahalanobis radius 5
against p_r's own exp(-12.5), and the sample covariance (p_r's: [[2, 1], [1, 2]]).

Usage: python docs/calibration/exact_eps_sampler.py
"""
import math

import torch

from toy.schedules import alpha_bar, betas_from_alpha_bar

SIGMA = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)


def sample(T: int, variance: str, n: int, gen: torch.Generator) -> torch.Tensor:
    ab = alpha_bar("cosine", T)
    b = betas_from_alpha_bar(ab)
    x = torch.randn(n, 2, dtype=torch.float64, generator=gen)
    for t in range(T, 0, -1):
        C = ab[t] * SIGMA + (1 - ab[t]) * torch.eye(2, dtype=torch.float64)
        eps = (1 - ab[t]).sqrt() * x @ torch.linalg.inv(C)
        x = (x - b[t] / (1 - ab[t]).sqrt() * eps) / (1 - b[t]).sqrt()
        if t > 1:
            var = b[t] if variance == "beta" else b[t] * (1 - ab[t - 1]) / (1 - ab[t])
            x = x + var.sqrt() * torch.randn(x.shape, dtype=torch.float64, generator=gen)
    return x


def main(n: int = 4_000_000) -> None:
    gen = torch.Generator().manual_seed(0)
    P = torch.linalg.inv(SIGMA)
    for T in (40, 100):
        for variance in ("beta", "posterior"):
            x = sample(T, variance, n, gen)
            share = (((x @ P) * x).sum(1) > 25).double().mean().item()
            cov = (x.T @ x / n).flatten().numpy().round(3)
            print(f"T = {T}, {variance}: beyond radius 5 {share:.2e} ({share / math.exp(-12.5):.2f}x "
                  f"p_r's own), covariance {cov}")


if __name__ == "__main__":
    main()
