"""Distances between a model and p_r, from samples (DESIGN.md section 2).

w2, w1   exact optimal transport between two equal-weight sample sets (POT's network simplex):
         W_p = (min_pi sum pi_ij |x_i - y_j|^p)^(1/p). (scipy's exact assignment solver gives the
         same value for n = m and measured no faster at n = 1000: benchmarks/breakdown.py.)
         Between two finite samples of the same distribution it is not 0: about 0.19 for W2 at
         1000 vs 1000 points of the paper's target.
gaussian_w2  closed form W2 between N(m1, S1) and N(m2, S2) (Dowson & Landau 1982):
         |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^(1/2) S1 S2^(1/2))^(1/2)).
fd       the Frechet distance: gaussian_w2 between the samples' mean and covariance and the true
         (mu, Sigma) of p_r; almost no floor, no real sample needed.
"""
from __future__ import annotations

import numpy as np
import ot
import torch

from analysis.metrics import METRICS, NEEDS_REAL_SAMPLE  # noqa: F401 (the names, torch-free)

EMD_MAX_ITER = 10_000_000


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))


def wasserstein(x, y, p: int = 2) -> float:
    """Exact W_p between the empirical measures of x [n, d] and y [m, d] (uniform weights)."""
    x, y = _as_numpy(x), _as_numpy(y)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")  # a diverged model: POT would report a meaningless cost (even 0)
    M = ot.dist(x, y, metric="sqeuclidean")
    if p == 1:
        M = np.sqrt(M)
    elif p != 2:
        raise ValueError(f"p must be 1 or 2, got {p}")
    cost = emd_cost(M)
    return cost if p == 1 else float(np.sqrt(max(cost, 0.0)))


def emd_cost(M: np.ndarray) -> float:
    """min_pi <pi, M> over plans between uniform weights, by POT's network simplex."""
    a = np.full(M.shape[0], 1.0 / M.shape[0])
    b = np.full(M.shape[1], 1.0 / M.shape[1])
    return float(ot.emd2(a, b, M, numItermax=EMD_MAX_ITER))


def w2(x, y) -> float:
    return wasserstein(x, y, 2)


def w1(x, y) -> float:
    return wasserstein(x, y, 1)


def sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    """Symmetric PSD square root through the eigendecomposition (negative eigenvalues -> 0)."""
    vals, vecs = torch.linalg.eigh((S + S.transpose(-1, -2)) / 2)
    return vecs @ torch.diag_embed(vals.clamp(min=0).sqrt()) @ vecs.transpose(-1, -2)


def gaussian_w2(m1, S1, m2, S2) -> torch.Tensor:
    """Closed-form W2 between Gaussians; batched over leading dimensions, float64."""
    m1, S1, m2, S2 = (torch.as_tensor(v, dtype=torch.float64) for v in (m1, S1, m2, S2))
    r2 = sqrtm_psd(S2)
    cross = sqrtm_psd(r2 @ S1 @ r2)
    trace = torch.diagonal(S1 + S2 - 2 * cross, dim1=-2, dim2=-1).sum(-1)
    sq = ((m1 - m2) ** 2).sum(-1) + trace
    return sq.clamp(min=0).sqrt()


def moments(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [N, d] and unbiased covariance [N, d, d] of samples [N, n, d], float64."""
    x = samples.detach().to(torch.float64).flatten(2)
    mu = x.mean(1)
    c = x - mu.unsqueeze(1)
    return mu, c.transpose(1, 2) @ c / (x.shape[1] - 1)


def frechet_to_gaussian(samples: torch.Tensor, mean, cov) -> torch.Tensor:
    """fd per seed: W2 between N(sample mean, sample cov) and N(mean, cov). samples [N, n, d] -> [N]."""
    mu, S = moments(samples)
    return gaussian_w2(mu, S, torch.as_tensor(mean).expand_as(mu),
                       torch.as_tensor(cov).expand_as(S))


def per_seed(metric: str, samples: torch.Tensor, real: torch.Tensor | None = None,
             target=None, n_jobs: int = 1) -> torch.Tensor:
    """dist(G, p_r) for each seed: samples [N, n, d]; real [N, m, d] for w1/w2; target for fd;
    n_jobs > 1 solves the seeds' OT problems in that many threads (POT's exact solver releases
    the GIL: 2 threads 1.9x on 2 cores; the values do not depend on n_jobs)."""
    if metric == "fd":
        return frechet_to_gaussian(samples, target.mean, target.cov)
    if metric not in ("w1", "w2"):
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    p = 1 if metric == "w1" else 2
    pairs = [(_as_numpy(s), _as_numpy(r)) for s, r in zip(samples, real)]
    if n_jobs > 1 and len(pairs) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(n_jobs, len(pairs))) as pool:
            values = list(pool.map(lambda pair: wasserstein(*pair, p), pairs))
    else:
        values = [wasserstein(s, r, p) for s, r in pairs]
    return torch.tensor(values, dtype=torch.float64)
