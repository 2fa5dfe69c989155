"""Is the toy DDPM's sampler itself a source of outliers? Ancestral sampling with the EXACT eps of
the noised paper Gaussian (no network; toy.reference.gaussian_eps), the schedule and update of
toy/ddpm.py, sigma_t^2 = beta_t (madlab's default) or beta-tilde_t. Prints the share of 4 M
samples beyond Mahalanobis radius 5 (analysis.tails) against p_r's own, and the sample covariance
(p_r's: [[2, 1], [1, 2]]).

Usage: python docs/studies/tail-screen/exact_eps_sampler.py
"""
import torch

from analysis.tails import outlier_share, own_rate
from toy.reference import gaussian_eps
from toy.schedules import alpha_bar, betas_from_alpha_bar
from toy.targets import paper_gaussian


def sample(target, T: int, variance: str, n: int, gen: torch.Generator) -> torch.Tensor:
    ab = alpha_bar("cosine", T)
    b = betas_from_alpha_bar(ab)
    x = torch.randn(n, 2, dtype=torch.float64, generator=gen)
    for t in range(T, 0, -1):
        eps = gaussian_eps(x, float(ab[t]), target.mean, target.cov)
        x = (x - b[t] / (1 - ab[t]).sqrt() * eps) / (1 - b[t]).sqrt()
        if t > 1:
            var = b[t] if variance == "beta" else b[t] * (1 - ab[t - 1]) / (1 - ab[t])
            x = x + var.sqrt() * torch.randn(x.shape, dtype=torch.float64, generator=gen)
    return x


def main(n: int = 4_000_000) -> None:
    gen = torch.Generator().manual_seed(0)
    target = paper_gaussian()
    own = own_rate(target)
    for T in (40, 100):
        for variance in ("beta", "posterior"):
            x = sample(target, T, variance, n, gen)
            share = float(outlier_share(x.unsqueeze(0), target)[0])
            cov = (x.T @ x / n).flatten().numpy().round(3)
            print(f"T = {T}, {variance}: beyond radius 5 {share:.2e} ({share / own:.2f}x "
                  f"p_r's own), covariance {cov}")


if __name__ == "__main__":
    main()
