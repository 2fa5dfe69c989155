"""Distances between a model and p_r, from samples (DESIGN.md section 2).

w2, w1   exact optimal transport between two equal-weight sample sets (POT's network simplex):
         W_p = (min_pi sum pi_ij |x_i - y_j|^p)^(1/p). (scipy's exact assignment solver gives the
         same value for n = m and measured no faster at n = 1000: benchmarks/breakdown.py.)
         Between two finite samples of the same distribution it is not 0: about 0.19 for W2 at
         1000 vs 1000 points of the paper's target.
wasserstein_batch  the same for N seeds at once on the samples' device (CPU or CUDA), by the
         batched auction of analysis/assignment.py (n = m), certified within rtol of the optimum.
per_seed picks the solver: env MADLAB_OT = auto (default: the auction for CUDA samples, POT on
         the CPU, where it is faster: benchmarks/ot_solvers.py), pot, or auction.
gaussian_w2  closed form W2 between N(m1, S1) and N(m2, S2) (Dowson & Landau 1982):
         |m1 - m2|^2 + tr(S1 + S2 - 2 (S2^(1/2) S1 S2^(1/2))^(1/2)).
fd       the Frechet distance: gaussian_w2 between the samples' mean and covariance and the true
         (mu, Sigma) of p_r; almost no floor, no real sample needed.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from analysis.assignment import RTOL, auction, sq_euclidean
from analysis.metrics import METRICS, NEEDS_REAL_SAMPLE  # noqa: F401 (the names, torch-free)

OT_SOLVERS = ("auto", "pot", "auction")
CHUNK_BYTES = 2**30  # float64 cost matrices [k, n, n] held at once on the CPU; on CUDA up to
                     # a quarter of the free memory (the auction holds about three copies)

EMD_MAX_ITER = 10_000_000


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))


def wasserstein(x, y, p: int = 2) -> float:
    """Exact W_p between the empirical measures of x [n, d] and y [m, d] (uniform weights)."""
    import ot  # POT: imported where used, so the device path (the auction, fd) runs without it

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
    import ot

    a = np.full(M.shape[0], 1.0 / M.shape[0])
    b = np.full(M.shape[1], 1.0 / M.shape[1])
    return float(ot.emd2(a, b, M, numItermax=EMD_MAX_ITER))


def w2(x, y) -> float:
    return wasserstein(x, y, 2)


def w1(x, y) -> float:
    return wasserstein(x, y, 1)


def wasserstein_batch(x: torch.Tensor, y: torch.Tensor, p: int = 2,
                      rtol: float = RTOL) -> torch.Tensor:
    r"""Exact W_p between x[k] and y[k] for every seed k, on x's device.

    For equal sizes n and uniform weights the optimal plan is a permutation, so
    W_p(x_k, y_k)^p = (1/n) min_sigma sum_i |x_ki - y_k,sigma(i)|^p, solved for all seeds at once
    by `analysis.assignment.auction` in float64; each value is certified:
    W_p^p <= OT^p * (1 + rtol) (W_p within rtol / p, relative).

    Parameters
    ----------
    x, y : [N, n, ...] samples (same n; flattened to [N, n, d]), any device
    p : 1 (Euclidean costs) or 2 (squared Euclidean)
    rtol : certified relative gap of the assignment cost

    Returns
    -------
    [N] float64 on the CPU; NaN for a seed whose samples are not all finite (a diverged model).

    Examples
    --------
    >>> x = torch.tensor([[[0., 0.], [1., 0.]]])
    >>> wasserstein_batch(x, x + torch.tensor([0., 2.])).tolist()
    [2.0]

    Reference: POT's `ot.emd2` (Flamary et al., JMLR 22(78), 2021) gives the same values.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    x, y = x.flatten(2), y.to(x.device).flatten(2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"the assignment needs equal sample sizes, got {x.shape[1]} and {y.shape[1]}")
    ok = x.isfinite().flatten(1).all(1) & y.isfinite().flatten(1).all(1)
    out = torch.full((x.shape[0],), float("nan"), dtype=torch.float64, device=x.device)
    seeds = ok.nonzero().squeeze(1)
    n = x.shape[1]
    budget = CHUNK_BYTES
    if x.device.type == "cuda":
        budget = torch.cuda.mem_get_info(x.device)[0] // 4
    step = max(1, budget // (8 * n * n))
    for k in seeds.split(step):
        C = sq_euclidean(x[k], y[k])
        cost = auction(C.sqrt_() if p == 1 else C, rtol).cost / n
        out[k] = cost if p == 1 else cost.sqrt()
    return out.cpu()


def ot_solver() -> str:
    """The exact-OT solver of `per_seed`: env MADLAB_OT = auto | pot | auction (default auto)."""
    value = os.environ.get("MADLAB_OT", "").strip().lower() or "auto"
    if value not in OT_SOLVERS:
        raise ValueError(f"MADLAB_OT must be one of {', '.join(OT_SOLVERS)}, got {value!r}")
    return value


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


def trace_sqrt_product(S: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """tr((C^(1/2) S C^(1/2))^(1/2)) for symmetric PSD S [..., d, d] and C [d, d] (or broadcast):
    the sum of the square roots of the eigenvalues of S C. For d <= 2 in closed form from the
    trace and determinant, tr(A^(1/2)) = sqrt(tr A + 2 sqrt(det A)) with tr A = tr(S C) and
    det A = det S det C, so no eigendecomposition runs (on a GPU `torch.linalg.eigh` checks its
    convergence on the host: a synchronisation per call); larger d through `sqrtm_psd`."""
    d = S.shape[-1]
    C = C.expand_as(S)
    if d == 1:
        return (S[..., 0, 0] * C[..., 0, 0]).clamp(min=0).sqrt()
    if d == 2:
        tr = (S * C.transpose(-1, -2)).sum((-2, -1))
        det_s = S[..., 0, 0] * S[..., 1, 1] - S[..., 0, 1] * S[..., 1, 0]
        det_c = C[..., 0, 0] * C[..., 1, 1] - C[..., 0, 1] * C[..., 1, 0]
        return (tr + 2 * (det_s * det_c).clamp(min=0).sqrt()).clamp(min=0).sqrt()
    R = sqrtm_psd(C)
    vals = torch.linalg.eigvalsh(R @ S @ R)
    return vals.clamp(min=0).sqrt().sum(-1)


def frechet_to_gaussian(samples: torch.Tensor, mean, cov) -> torch.Tensor:
    """fd per seed: W2 between N(sample mean, sample cov) and N(mean, cov). samples [N, n, d] -> [N],
    on the samples' device (mean and cov are moved there; `per_seed` passes copies kept there).

    W2^2 = |mu - mean|^2 + tr S + tr cov - 2 tr((cov^(1/2) S cov^(1/2))^(1/2)) (Dowson & Landau
    1982, as `gaussian_w2`), the last trace by `trace_sqrt_product` (closed form for d <= 2)."""
    mu, S = moments(samples)
    mean = torch.as_tensor(mean, dtype=torch.float64).to(mu.device)
    cov = torch.as_tensor(cov, dtype=torch.float64).to(mu.device)
    trace = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) + torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    sq = ((mu - mean) ** 2).sum(-1) + trace - 2 * trace_sqrt_product(S, cov)
    return sq.clamp(min=0).sqrt()


def per_seed(metric: str, samples: torch.Tensor, real: torch.Tensor | None = None,
             target=None, n_jobs: int = 1) -> torch.Tensor:
    """dist(G, p_r) for each seed, [N] float64 on the CPU: samples [N, n, d] on any device;
    real [N, m, d] for w1/w2; target for fd.

    w1/w2 by `ot_solver()`: `auction` solves all seeds at once on the samples' device
    (`wasserstein_batch`; needs n = m, else POT); `pot` moves the samples to the host and
    solves each seed with POT, in n_jobs threads (POT's exact solver releases the GIL: 2 threads
    1.9x on 2 cores; the values do not depend on n_jobs); `auto` is the auction for CUDA samples
    and POT for CPU samples (POT is faster there: benchmarks/ot_solvers.py)."""
    if metric == "fd":  # on the samples' device: only the [N] values come back
        moments_on = getattr(target, "moments_on", None)
        mean, cov = moments_on(samples.device) if moments_on else (target.mean, target.cov)
        return frechet_to_gaussian(samples, mean, cov).cpu()
    if metric not in ("w1", "w2"):
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    p = 1 if metric == "w1" else 2
    solver = ot_solver()
    if solver == "auto":
        solver = "auction" if samples.is_cuda else "pot"
    if solver == "auction" and samples.shape[1] == real.shape[1]:
        return wasserstein_batch(samples, real, p)
    return pot_each([(s, r) for s, r in zip(samples, real)], p, n_jobs)


def pot_each(pairs, p: int = 2, n_jobs: int = 1) -> torch.Tensor:
    """Exact W_p of every (x [n, d], y [m, d]) pair by POT on the host (sizes may differ), in
    n_jobs threads (POT's exact solver releases the GIL) -> [len(pairs)] float64."""
    pairs = [(_as_numpy(x), _as_numpy(y)) for x, y in pairs]
    if n_jobs > 1 and len(pairs) > 1:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(min(n_jobs, len(pairs))) as pool:
            values = list(pool.map(lambda pair: wasserstein(*pair, p), pairs))
    else:
        values = [wasserstein(x, y, p) for x, y in pairs]
    return torch.tensor(values, dtype=torch.float64)
