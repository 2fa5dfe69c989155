"""Exact expectations of self-consuming loops of the Gaussian fit, standard training and SIMS.

The model of generation t is N(mu_t, lambda S_t) (lambda: the sampling bias), fitted to D^t by
maximum likelihood (or the unbiased estimator), p_r = N(mu, Sigma). Write c_n = (n - 1) / n for
the MLE (1 for the unbiased fit), m = |D_s|, n_s = SIMS's auxiliary set, d the dimension.

**SIMS in parameter space** (Eq. 6, as `GaussianFit.combine` mixes theta = (mu, Sigma)). The
auxiliary fit on n_s samples of N(mu_b, lambda Sigma_b) has E[Sigma_aux | base] = lambda c_{n_s}
Sigma_b and mu_aux = mu_b + eps, E[eps eps^T | base] = lambda Sigma_b / n_s, so

    S    = (1 + w) Sigma_b - w Sigma_aux,   E[S | base] = g Sigma_b,  g = 1 + w (1 - lambda c_{n_s})
    mu_t = (1 + w) mu_b - w mu_aux = mu_b - w eps

(lambda = 1, MLE: g = 1 + w / n_s). In the fully synthetic loop E[S_t] = g c_{n_r} (lambda c_m g)^(t-1)
Sigma, held constant from t = 2 on by

    w* = (1 / (lambda c_m) - 1) / (1 - lambda c_{n_s})     (lambda = 1, MLE: w* = n_s / (m - 1)).

SIMS cannot stop the mean's random walk: every generation adds w^2 lambda E tr Sigma_b / n_s to it.

**Every loop kind, exactly, in traces** (`param_moments`). D^t is a union of groups (D_r or D_r^t,
the D_s^i it keeps) whose means are linear in independent zero-mean noises: the real set's mean
error (variance tr Sigma / n_r), each synthetic set's sampling error (lambda E tr S_i / m), each
auxiliary fit's eps (lambda E tr Sigma_b / n_s) and, for accumulate-subsample, the subset's mean error.
The pooled MLE of groups of sizes n_i, means x_i and within-group MLEs W_i is
sum_i (n_i / N) W_i + sum_i (n_i / N) (x_i - xbar)(x_i - xbar)^T, with E tr W_i = c_{n_i} x (its
group's model covariance). The Gram matrix of the noises gives E|x_i - xbar|^2 exactly, so
E tr S_t, E|mu_t - mu|^2 and E|mu_t - mean(D_r)|^2 follow for every t, w, n_r, m, n_s and lambda,
as long as S stays positive definite (`GaussianFit` floors it otherwise; keep w small against n_s).
accumulate-subsample (n points uniformly without replacement from the pool of N): the subset's
MLE has E = c_n N / (N - 1) times the pool's MLE and its mean adds noise of variance
(N - n) / (n (N - 1)) tr(pool MLE).

**Accumulate bound** (Gerstgrasser et al. 2024; Kazdan et al. 2024): with |D_s| = |D_r| = n and a
covariance that never grows, mu_t - mu = sum_k eta_k / k, so E|mu_t - mu|^2 <= (pi^2 / 6) tr Sigma / n.

**SIMS in score space** (Eq. 5): the guided model is the Gaussian with precision
P = (1 + w) P_b - w P_aux. With P_aux = (n_s / lambda) Sigma_b^(-1/2) W^(-1) Sigma_b^(-1/2),
W ~ Wishart(n_s - 1, I), the inverse-Wishart mean E[W^(-1)] = I / (n_s - d - 2) gives

    E[P | base] = kappa P_b,   kappa = 1 + w - w n_s / (lambda (n_s - d - 2)),

and a fit on m samples of N(., lambda S) has E[P_b] = m / (lambda (m - d - 2)) S^(-1). So in the fully
synthetic loop E[P_t] = kappa n_r / (n_r - d - 2) (kappa m / (lambda (m - d - 2)))^(t-1) Sigma^(-1)
exactly (`score_precision`). The covariance S_t = P_t^(-1) and the mean have no closed form:
E[((1 + w) I - w (n_s / lambda) W^(-1))^(-1)] is a rational function of Wishart eigenvalues with a
pole where P stops being positive definite; nor does any pooled loop (augment, accumulate), whose
fit mixes covariances, not precisions. There madlab shows the simulation alone.
"""
from __future__ import annotations

import math

import numpy as np

PI2_6 = math.pi ** 2 / 6     # sum_k 1 / k^2: the accumulate loop's bound on the mean's error
LOOPS = ("fully-synthetic", "augment", "fresh", "accumulate", "accumulate-subsample")


def shrink(n: int, estimator: str = "mle") -> float:
    """c_n = E[fitted Sigma] / Sigma for n points: (n - 1) / n for the MLE, 1 for the unbiased fit."""
    return (n - 1) / n if estimator == "mle" else 1.0


def param_gain(omega: float, n_aux: int, bias: float = 1.0, estimator: str = "mle") -> float:
    """g = E[S | base] / Sigma_b for SIMS in parameter space: 1 + w (1 - lambda c_{n_s}).

    >>> round(param_gain(3.0, 100), 6)       # 1 + w / n_s
    1.03
    """
    return 1.0 + omega * (1.0 - bias * shrink(n_aux, estimator))


def omega_star(n_train: int, n_aux: int, bias: float = 1.0, estimator: str = "mle") -> float:
    """w* that makes E[S_t] = E[S_{t-1}] in the fully synthetic loop: lambda c_m g = 1.

    (1 / (lambda c_m) - 1) / (1 - lambda c_{n_s}); n_s / (m - 1) for the MLE with lambda = 1. Infinite
    where no w helps (the unbiased fit with lambda = 1 needs none: it returns 0 there).

    >>> round(omega_star(100, 2000), 4)        # 2000 / 99
    20.202
    """
    need = 1.0 / (bias * shrink(n_train, estimator)) - 1.0
    lever = 1.0 - bias * shrink(n_aux, estimator)
    if need == 0:
        return 0.0
    return need / lever if lever > 0 else math.inf


def score_gain(omega: float, n_aux: int, bias: float = 1.0, dim: int = 2) -> float:
    """kappa = E[P | base] / P_b for SIMS in score space (MLE auxiliary fit): 1 + w - w n_s / (lambda (n_s - d - 2))."""
    if n_aux <= dim + 2:
        raise ValueError(f"the inverse-Wishart mean needs n_s > d + 2 = {dim + 2}, got {n_aux}")
    return 1.0 + omega - omega * n_aux / (bias * (n_aux - dim - 2))


def score_precision(gens: int, n_real: int, n_synth: int, omega: float, n_aux: int,
                    bias: float = 1.0, dim: int = 2) -> np.ndarray:
    """E[tr(Sigma P_t)] / d for t = 1..gens, score-space SIMS (MLE), fully synthetic loop, exactly.

    kappa n_r / (n_r - d - 2) (kappa m / (lambda (m - d - 2)))^(t - 1); omega = 0 is standard training.
    """
    if min(n_real, n_synth) <= dim + 2:
        raise ValueError(f"the inverse-Wishart mean needs n > d + 2 = {dim + 2}")
    k = score_gain(omega, n_aux, bias, dim) if omega != 0 else 1.0
    first = k * n_real / (n_real - dim - 2)
    step = k * n_synth / (bias * (n_synth - dim - 2))
    return first * step ** np.arange(gens, dtype=np.float64)


def param_moments(kind: str, gens: int, n_real: int, n_synth: int, *, omega: float = 0.0,
                  n_aux: int = 2, bias: float = 1.0, estimator: str = "mle",
                  n_train: int | None = None) -> dict[str, np.ndarray]:
    """Exact per-generation expectations (t = 1..gens), in units of tr Sigma, for standard training
    (omega = 0) or SIMS in parameter space:

      cov        E[tr S_t] / tr Sigma                the model's covariance parameter (sampled as lambda S_t)
      base_cov   E[tr Sigma_b^t] / tr Sigma          the fit on D^t before SIMS
      drift      E|mu_t - mu|^2 / tr Sigma           from the true mean
      drift_real E|mu_t - mean(D_r^1)|^2 / tr Sigma  from the first real set's mean (mu_1 of standard)
      size       |D^t|

    kind: fully-synthetic, augment, fresh, accumulate or accumulate-subsample (n_train points a
    generation, default n_real). See the module docstring for the derivation.
    """
    if kind not in LOOPS:
        raise ValueError(f"unknown loop kind {kind!r}; choose one of {', '.join(LOOPS)}")
    n_train = n_real if n_train is None else n_train
    g = param_gain(omega, n_aux, bias, estimator)
    variances: list[float] = []               # var (in tr Sigma) of each independent noise

    def noise(var: float) -> np.ndarray:      # a new independent noise, as a coefficient vector
        variances.append(var)
        v = np.zeros(len(variances))
        v[-1] = 1.0
        return v

    def pad(v: np.ndarray) -> np.ndarray:
        return np.concatenate([v, np.zeros(len(variances) - len(v))])

    def inner(a: np.ndarray, b: np.ndarray) -> float:
        a, b = pad(a), pad(b)
        return float(np.sum(a * b * np.asarray(variances)))

    # a group: (size, mean's coefficients, E tr of its model covariance / tr Sigma)
    real = (n_real, noise(1.0 / n_real), 1.0)
    first_real = real[1]
    groups_synth: list[tuple[int, np.ndarray, float]] = []
    out = {k: np.zeros(gens) for k in ("cov", "base_cov", "drift", "drift_real", "size")}
    for t in range(1, gens + 1):
        if t == 1:
            groups = [real]
        elif kind == "fully-synthetic":
            groups = [groups_synth[-1]]
        elif kind == "augment":
            groups = [real, groups_synth[-1]]
        elif kind == "fresh":
            real = (n_real, noise(1.0 / n_real), 1.0)
            groups = [real, groups_synth[-1]]
        else:
            groups = [real, *groups_synth]
        N = sum(n for n, _, _ in groups)
        xbar = sum(pad(x) * (n / N) for n, x, _ in groups)
        pooled = (sum(n / N * shrink(n, "mle") * c for n, _, c in groups)      # within groups
                  + sum(n / N * inner(pad(x) - pad(xbar), pad(x) - pad(xbar)) for n, x, _ in groups))
        size = N
        if kind == "accumulate-subsample" and t > 1 and n_train < N:
            extra = noise((N - n_train) / (n_train * (N - 1)) * pooled)
            base_mean = pad(xbar) + extra
            base = shrink(n_train, "mle") * N / (N - 1) * pooled                 # the subset's MLE
            size = n_train
        else:
            base_mean, base = xbar, pooled
        if estimator == "unbiased":
            base *= size / (size - 1)
        if omega != 0:
            eps = noise(bias * base / n_aux)               # mu_aux - mu_b
            mean = pad(base_mean) - omega * eps
        else:
            mean = base_mean
        cov = g * base if omega != 0 else base
        out["cov"][t - 1], out["base_cov"][t - 1], out["size"][t - 1] = cov, base, size
        out["drift"][t - 1] = inner(mean, mean)
        gap = pad(mean) - pad(first_real)
        out["drift_real"][t - 1] = inner(gap, gap)
        # D_s^t: m points of N(mean, lambda S_t): its mean adds sampling noise
        eta = noise(bias * cov / n_synth)
        groups_synth.append((n_synth, pad(mean) + eta, bias * cov))
    return out


def accumulate_bound(n_real: int) -> float:
    """(pi^2 / 6) / n_r: the accumulate loop's bound on E|mu_t - mu|^2 / tr Sigma with |D_s| = |D_r|."""
    return PI2_6 / n_real


def classify(ratio: float, standard: float, tolerance: float = 0.05) -> str:
    """SIMS against standard training for a covariance ratio r = E[tr S] / tr Sigma (paper section 2
    applied to the covariance): prevented if |r - 1| <= tolerance, mitigated if log r is nearer 0
    than standard's, else worse."""
    if abs(ratio - 1.0) <= tolerance:
        return "prevented"
    if abs(math.log(ratio)) < abs(math.log(standard)):
        return "mitigated"
    return "worse"
