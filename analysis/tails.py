"""Tail diagnostics: how many model samples lie far outside p_r, and the distance without them.

Mean distances over seeds can be decided by a handful of far samples (DESIGN.md section 2): a few
points at |x| ~ 100 dominate W2 (through squared distances) and fd (through the covariance).
These functions make that tail visible. Arrays in, numbers out, batched over seeds.

radius      r(x) = min_j sqrt((x - mu_j)^T Sigma_j^-1 (x - mu_j)), the Mahalanobis radius under
            p_r; a Gaussian target is the one-component case (j = 1), a mixture uses each mode.
outlier     r(x) > R, R = OUTLIER_RADIUS = 5. For a d-dimensional Gaussian p_r the radius of a
            p_r sample is chi-distributed with d degrees of freedom, so p_r itself puts
            P(r > R) = P(chi2_d > R^2) of its mass there: exp(-R^2 / 2) = exp(-12.5) = 3.7e-6 in
            2-D. For a mixture, P(min_j r_j > R) <= sum_j w_j P(chi2_d > R^2) = the same number
            (equal when the modes are far apart), so R = 5 is a radius p_r exceeds with
            probability at most 3.7e-6 in 2-D (`own_rate`).
inliers     the samples with r(x) <= R; the "distance on inliers" is the distance between the
            inliers of the model sample and those of the real sample (the real sample has, to
            that rate, none to drop). A non-finite sample (a diverged model) counts as an outlier.

`distance_on_inliers` is the reference (every seed solved on its inliers); `inlier_distance` is
what every run records (madlab.runner): the same numbers, but a seed with nothing to drop reuses
the plain distance instead of solving a second OT problem (`tail_metrics` computes all of them).

A target is anything with `mean` [d] and `cov` [d, d] (toy.targets.Gaussian), or with `weights`
[m], `means` [m, d] and `covs` [m, d, d] (toy.targets.GaussianMixture).
"""
from __future__ import annotations

import torch

from analysis.distances import frechet_to_gaussian, per_seed, pot_each, wasserstein
from analysis.metrics import OUTLIER_RADIUS, OUTLIER_SHARE, base_metric


def components(target) -> tuple[torch.Tensor, torch.Tensor]:
    """(means [m, d], covs [m, d, d]) of a Gaussian (m = 1) or Gaussian-mixture target, float64."""
    if hasattr(target, "means") and hasattr(target, "covs"):
        means, covs = target.means, target.covs
    else:
        means, covs = torch.as_tensor(target.mean)[None], torch.as_tensor(target.cov)[None]
    return torch.as_tensor(means, dtype=torch.float64), torch.as_tensor(covs, dtype=torch.float64)


def _constants(target, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(means [m, d], Cholesky factors [m, d, d]) of p_r's modes on `device`, float64, computed
    once per device and kept on the target: an evaluation on a GPU then copies nothing from the
    host (tests/test_transfers.py)."""
    cache = target.__dict__.setdefault("_tail_constants", {}) if hasattr(target, "__dict__") else {}
    key = (device.type, device.index)
    if key not in cache:
        means, covs = components(target)
        cache[key] = (means.to(device), torch.linalg.cholesky(covs).to(device))
    return cache[key]


def mahalanobis_radius(samples, target) -> torch.Tensor:
    """Mahalanobis radius of every sample under p_r, the smallest over p_r's modes.

    r(x) = min_j sqrt((x - mu_j)^T Sigma_j^-1 (x - mu_j))

    Parameters
    ----------
    samples : array [..., n, d] (e.g. [N seeds, n, d])
    target : p_r, a Gaussian (`mean`, `cov`) or a Gaussian mixture (`means`, `covs`)

    Returns
    -------
    r : float64 tensor [..., n]

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p_r = SimpleNamespace(mean=[0.0, 0.0], cov=[[4.0, 0.0], [0.0, 1.0]])
    >>> mahalanobis_radius([[2.0, 0.0], [0.0, 3.0]], p_r)
    tensor([1., 3.], dtype=torch.float64)
    """
    x = torch.as_tensor(samples, dtype=torch.float64)                   # on its own device
    means, chol = _constants(target, x.device)                           # [m, d], [m, d, d]
    centred = x.unsqueeze(-2) - means                                    # [..., n, m, d]
    z = torch.linalg.solve_triangular(chol, centred.unsqueeze(-1), upper=False)  # L^-1 (x - mu)
    return z.squeeze(-1).norm(dim=-1).amin(dim=-1)


def inlier_mask(samples, target, radius: float = OUTLIER_RADIUS) -> torch.Tensor:
    """True where a sample lies within Mahalanobis radius `radius` of p_r: bool [..., n]."""
    return mahalanobis_radius(samples, target) <= radius


def outlier_share(samples, target, radius: float = OUTLIER_RADIUS) -> torch.Tensor:
    """Fraction of samples with Mahalanobis radius above `radius` under p_r, per seed.

    share = (1 / n) #{i : r(x_i) > radius}; compare with `own_rate(target, radius)`, p_r's own
    share (3.7e-6 at radius 5 in 2-D).

    Parameters
    ----------
    samples : array [..., n, d]
    target : p_r (see the module docstring)
    radius : R (default OUTLIER_RADIUS = 5)

    Returns
    -------
    share : float64 tensor [...]

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p_r = SimpleNamespace(mean=[0.0, 0.0], cov=[[2.0, 1.0], [1.0, 2.0]])
    >>> x = [[[0.0, 0.0], [1.0, 1.0], [40.0, -3.0], [0.5, 0.0]]]   # one seed, 4 samples
    >>> outlier_share(x, p_r)
    tensor([0.2500], dtype=torch.float64)
    """
    return (~inlier_mask(samples, target, radius)).to(torch.float64).mean(dim=-1)


def own_rate(target, radius: float = OUTLIER_RADIUS) -> float:
    """P(r > radius) under p_r itself: P(chi2_d > radius^2) for a Gaussian; for a mixture the
    bound sum_j w_j P(chi2_d > radius^2), which is the same number (equal for far-apart modes).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p_r = SimpleNamespace(mean=[0.0, 0.0], cov=[[2.0, 1.0], [1.0, 2.0]])
    >>> f"{own_rate(p_r):.3g}"        # exp(-12.5) in 2-D
    '3.73e-06'
    """
    d = components(target)[0].shape[-1]
    r2 = torch.tensor(radius ** 2 / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(torch.tensor(d / 2, dtype=torch.float64), r2))


def distance_on_inliers(metric: str, samples, real, target,
                        radius: float = OUTLIER_RADIUS) -> torch.Tensor:
    """dist(G, p_r) per seed computed on inliers only: the samples (and real points) with
    Mahalanobis radius <= `radius` under p_r.

    metric "w2" / "w1": exact optimal transport (analysis.distances.wasserstein) between the
    inliers of samples[k] and the inliers of real[k] (uniform weights on each, so the two sets
    may differ in size); "fd": the Frechet distance of the inliers' mean and covariance to p_r's
    (mean, cov) (`real` unused; a mixture's total mean and covariance, as the plain fd). With no
    sample beyond `radius` this is the plain distance.

    Parameters
    ----------
    metric : "w2", "w1" or "fd"
    samples : array [N, n, d], model samples per seed
    real : array [N, m, d], real samples per seed (None for "fd")
    target : p_r
    radius : R (default OUTLIER_RADIUS = 5)

    Returns
    -------
    dist : float64 tensor [N] (nan for a seed with fewer than two inliers)

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p_r = SimpleNamespace(mean=[0.0, 0.0], cov=[[1.0, 0.0], [0.0, 1.0]])
    >>> x = [[[0.0, 0.0], [1.0, 0.0], [100.0, 0.0]]]          # one far sample
    >>> y = [[[0.0, 0.0], [1.0, 0.0]]]
    >>> distance_on_inliers("w2", x, y, p_r)
    tensor([0.], dtype=torch.float64)
    """
    x = torch.as_tensor(samples, dtype=torch.float64)
    keep_x = inlier_mask(x, target, radius)
    if metric == "fd":
        mean, cov = (torch.as_tensor(v, dtype=torch.float64) for v in (target.mean, target.cov))
        out = []
        for xs, keep in zip(x, keep_x):
            inl = xs[keep]
            out.append(frechet_to_gaussian(inl[None], mean, cov)[0] if len(inl) > 1
                       else torch.tensor(float("nan"), dtype=torch.float64))
        return torch.stack(out).to(torch.float64) if out else torch.zeros(0, dtype=torch.float64)
    if metric not in ("w1", "w2"):
        raise ValueError(f"unknown metric {metric!r}; choose one of w2, w1, fd")
    y = torch.as_tensor(real, dtype=torch.float64)
    keep_y = inlier_mask(y, target, radius)
    p = 1 if metric == "w1" else 2
    values = [wasserstein(xs[kx], ys[ky], p) if kx.sum() > 1 and ky.sum() > 1 else float("nan")
              for xs, kx, ys, ky in zip(x, keep_x, y, keep_y)]
    return torch.tensor(values, dtype=torch.float64)


def inlier_distance(metric: str, samples: torch.Tensor, real: torch.Tensor | None, target,
                    plain: torch.Tensor | None = None, n_jobs: int = 1,
                    radius: float = OUTLIER_RADIUS) -> torch.Tensor:
    """`distance_on_inliers`, as every run records it: [N] float64 on the CPU.

    A seed with no model sample beyond `radius` (and, for w1/w2, no real point beyond it) has
    nothing to drop: it gets the plain distance, `plain[k]` when given (no second OT solve), else
    `per_seed` on those seeds (on a CUDA device the batched auction). Every other seed is solved on
    its inliers: w1/w2 by POT on the host in n_jobs threads (the two inlier sets differ in size,
    which the batched assignment cannot take), fd from the inliers' moments.

    Parameters
    ----------
    metric : "w2", "w1" or "fd"
    samples : [N, n, d] model samples, any device
    real : [N, m, d] real samples (w1/w2), any device; None for fd
    target : p_r
    plain : [N] the plain distance of the same samples, if already measured
    n_jobs : POT threads
    radius : R (default OUTLIER_RADIUS = 5)
    """
    x = samples.detach()
    keep_x = inlier_mask(x, target, radius)                 # on the samples' device
    has_out = ~keep_x.all(-1)
    keep_y = None
    if metric in ("w1", "w2"):
        keep_y = inlier_mask(real.detach(), target, radius)
        has_out |= ~keep_y.all(-1)
    # which seeds have something to drop: an [N] read, like the results; only those seeds'
    # samples leave the device (for POT), the others reuse the plain distance
    clean = ~has_out.cpu()
    out = torch.full((x.shape[0],), float("nan"), dtype=torch.float64)
    if clean.any():
        if plain is not None:
            out[clean] = torch.as_tensor(plain, dtype=torch.float64).cpu()[clean]
        else:
            idx = clean.nonzero().squeeze(1)
            out[clean] = per_seed(metric, x[idx.to(x.device)],
                                  None if metric == "fd" else real[idx.to(real.device)], target, n_jobs)
    dirty = (~clean).nonzero().squeeze(1)
    if len(dirty) == 0:
        return out
    on_device = dirty.to(x.device)
    xs = x[on_device].cpu()                                  # [k, n, d]: the dirty seeds only
    if metric == "fd":
        out[dirty] = distance_on_inliers("fd", xs, None, target, radius)
        return out
    ys = real.detach()[on_device.to(real.device)].cpu()
    keep_x, keep_y = keep_x[on_device].cpu(), keep_y[on_device.to(keep_y.device)].cpu()
    solvable = [j for j in range(len(dirty)) if keep_x[j].sum() > 1 and keep_y[j].sum() > 1]
    if solvable:
        out[dirty[solvable]] = pot_each([(xs[j][keep_x[j]], ys[j][keep_y[j]]) for j in solvable],
                                        1 if metric == "w1" else 2, n_jobs)
    return out


def tail_metrics(names, samples: torch.Tensor, real: torch.Tensor | None, target,
                 plain: dict | None = None, n_jobs: int = 1) -> dict[str, torch.Tensor]:
    """The tail diagnostics among `names` (analysis.metrics.TAIL_METRICS), [N] float64 each:
    "outlier_share" and "<m>_inlier" (`inlier_distance`, reusing plain[m] when given). Other
    names are skipped."""
    out = {}
    for name in names:
        if name == OUTLIER_SHARE:
            out[name] = outlier_share(samples.detach(), target).cpu()   # [N] results
        elif (m := base_metric(name)) is not None:
            out[name] = inlier_distance(m, samples, real, target, (plain or {}).get(m), n_jobs)
    return out
