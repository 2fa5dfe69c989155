"""The three MAD loops' known behaviour (Alemohammad et al. 2023) with the closed-form Gaussian fit.

G^t = N(mu_t, lambda Sigma_t), fitted to D^t by maximum likelihood (or the unbiased estimator).
Predictions checked against many seeds (c_n = (n - 1) / n for the MLE, 1 for the unbiased fit,
rho = |D_s| / (|D_r| + |D_s|), lambda the sampling bias):
  fully synthetic  E[Sigma_t] = c_{n_r} (lambda c_{n_s})^(t-1) Sigma          (covariance collapse)
                   E|mu_t - mu|^2 = tr Sigma [1/n_r + sum_{k=2..t} lambda E[Sigma_{k-1}] / (n_s Sigma)]
                   (a random walk: linear in t for the unbiased fit with lambda = 1)
  augment          mu_t - mu_1 is an AR(1) with factor rho: bounded, stationary
                   E|mu_t - mu_1|^2 -> rho^2 lambda f tr Sigma / (n_s (1 - rho^2)), E[Sigma_t] -> f Sigma
  fresh            the same fixed point around the true mu, whatever the size of the first real set
"""
from __future__ import annotations

import matplotlib
import pandas as pd
import torch

from analysis.distances import gaussian_w2
from loops import Loop, SeedStreams
from loops.algorithms import Standard
from loops.kinds import training_set
from loops.options import require
from madlab.experiments.common import Progress, Result, mean_se, no_progress
from madlab.experiments.toy_settings import MadLoops as Settings
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian


# ----------------------------------------------------------------------------- theory
def shrink(n: int, estimator: str) -> float:
    """c_n = E[fitted Sigma] / Sigma for n points: (n - 1) / n for the MLE, 1 for the unbiased fit."""
    return (n - 1) / n if estimator == "mle" else 1.0


def fully_synthetic_theory(gens: int, n_real: int, n_synth: int, estimator: str, bias: float):
    """(E[tr Sigma_t] / tr Sigma, E|mu_t - mu|^2 / tr Sigma) for t = 1..gens, exactly."""
    c_r, c_s = shrink(n_real, estimator), shrink(n_synth, estimator)
    cov = [c_r * (bias * c_s) ** (t - 1) for t in range(1, gens + 1)]
    drift = [1.0 / n_real]
    for t in range(2, gens + 1):
        drift.append(drift[-1] + bias * cov[t - 2] / n_synth)
    return torch.tensor(cov, dtype=torch.float64), torch.tensor(drift, dtype=torch.float64)


def mixing_limits(kind: str, n_real: int, n_synth: int, estimator: str, bias: float):
    """Stationary (E[tr Sigma_t] / tr Sigma, E|mu_t - centre|^2 / tr Sigma) of augment or fresh.

    centre is mu_1 (the fit of the fixed D_r) for augment and the true mu for fresh. Pooled MLE of
    D_r ∪ D_s: Sigma_t = (1 - rho) Sigma_r + rho Sigma_s + rho (1 - rho) (m_r - m_s)(m_r - m_s)^T.
    Traces only, assuming every covariance stays proportional to Sigma (exact in expectation here).
    """
    rho = n_synth / (n_real + n_synth)
    c_r, c_s = shrink(n_real, estimator), shrink(n_synth, estimator)
    between_scale = 1.0 if estimator == "mle" else (n_real + n_synth) / (n_real + n_synth - 1)
    f, V = c_r, 0.0
    for _ in range(2000):  # a contraction: fixed-point iteration converges
        noise_s = bias * f / n_synth          # E|m_s - mu_{t-1}|^2 / tr Sigma
        if kind == "augment":
            V = rho ** 2 * noise_s / (1 - rho ** 2)
            gap = V + noise_s                  # E|mu_1 - m_s|^2
        else:
            V = ((1 - rho) ** 2 / n_real + rho ** 2 * noise_s) / (1 - rho ** 2)
            gap = 1.0 / n_real + V + noise_s   # E|m_r - m_s|^2
        pooled = (1 - rho) * c_r + rho * bias * c_s * f + rho * (1 - rho) * gap
        f = pooled * between_scale if estimator == "unbiased" else pooled
    return f, V


# ----------------------------------------------------------------------------- loops
def trajectory(kind: str, streams: SeedStreams, settings: Settings, *, estimator: str = "mle",
               bias: float = 1.0, n_initial: int | None = None):
    """Fitted (mu [T, N, d], Sigma [T, N, d, d]) of every generation of one loop kind."""
    backend = GaussianFit(estimator=estimator, bias=bias)
    target = paper_gaussian()
    if n_initial is None or n_initial == settings.loop.n_real:
        loop = Loop(kind, Standard(epochs=1), backend, target, settings.loop.n_real, settings.loop.n_synth,
                    settings.loop.gens, n_eval=2)
        models = [r.model.model for r in loop.run(streams, lambda x, t: {}, keep_models=True)]
    else:
        require(kind == "fresh", "a first real set of another size only makes sense for the fresh loop")
        models = [m.model for m in fresh_with_initial_size(backend, target, streams, n_initial, settings)]
    return torch.stack([m[0] for m in models]), torch.stack([m[1] for m in models])


def fresh_with_initial_size(backend, target, streams: SeedStreams, n_initial: int, settings: Settings):
    """The fresh-data loop with |D_r^1| = n_initial and |D_r^t| = n_real for t >= 2.

    Same random streams as `Loop`, so with n_initial == n_real it is exactly Loop("fresh", ...).
    """
    algorithm = Standard(epochs=1)
    real = target.sample(n_initial, streams.keys("real", 1))
    synthetic, previous = [], None
    for t in range(1, settings.loop.gens + 1):
        if t > 1:
            real = target.sample(settings.loop.n_real, streams.keys("real", t))
        model = algorithm(backend, training_set("fresh", t, real, synthetic), streams, t, previous)
        yield model
        synthetic, previous = [model.sample(settings.loop.n_synth, streams.keys("synth", t))], model


def _trace(S: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)


# ----------------------------------------------------------------------------- experiment
def run(settings: Settings, progress: Progress = no_progress) -> Result:
    s = settings.validate()
    streams = SeedStreams(range(s.first_seed, s.first_seed + s.seeds))
    target = paper_gaussian()
    tr = float(_trace(target.cov))
    gen = torch.arange(1, s.loop.gens + 1)
    plan = ([("fully-synthetic", "mle", b, None) for b in s.biases]
            + [("fully-synthetic", "unbiased", 1.0, None)]
            + [("augment", "mle", b, None) for b in s.biases]
            + [("fresh", "mle", 1.0, n0) for n0 in s.initial_sizes])
    rows, curves, checks = [], {}, []
    for i, (kind, est, bias, n0) in enumerate(plan):
        progress(i, len(plan), f"{kind} {est} lambda={bias:g}" + (f" |D_r^1|={n0}" if n0 else ""))
        mu, S = trajectory(kind, streams, s, estimator=est, bias=bias, n_initial=n0)
        centre = mu[0] if kind == "augment" else target.mean
        cov_ratio = _trace(S) / tr                                  # [T, N]
        drift = ((mu - centre) ** 2).sum(-1) / tr                   # [T, N]
        dist = gaussian_w2(mu, bias * S, target.mean.expand_as(mu), target.cov.expand_as(S))  # [T, N]
        key = (kind, est, bias, n0)
        curves[key] = {"cov": cov_ratio, "drift": drift, "dist": dist}
        for name, values in curves[key].items():
            m, sd = values.mean(1), values.std(1) / s.seeds ** 0.5
            med = values.median(1).values
            for t in range(s.loop.gens):
                rows.append(dict(loop=kind, estimator=est, bias=bias, n_initial=n0 or s.loop.n_real,
                                 generation=t + 1, quantity=name, mean=float(m[t]), se=float(sd[t]),
                                 median=float(med[t])))
        tail = slice(s.loop.gens - s.tail, s.loop.gens)
        if kind == "fully-synthetic":
            cov_th, drift_th = fully_synthetic_theory(s.loop.gens, s.loop.n_real, s.loop.n_synth, est, bias)
            curves[key] |= {"cov_theory": cov_th, "drift_theory": drift_th}
            checks.append(_check(f"{kind} {est} λ={bias:g}: E[tr Σ_T]/tr Σ", cov_ratio[-1], cov_th[-1]))
            checks.append(_check(f"{kind} {est} λ={bias:g}: E|μ_T−μ|²/tr Σ", drift[-1], drift_th[-1]))
        else:
            f, V = mixing_limits(kind, s.loop.n_real, s.loop.n_synth, est, bias)
            curves[key] |= {"cov_limit": f, "drift_limit": V}
            label = f"{kind} λ={bias:g}" + (f" |D_r^1|={n0}" if n0 else "")
            checks.append(_check(f"{label}: E[tr Σ_t]/tr Σ, last {s.tail} gens", cov_ratio[tail].mean(0), f))
            centre_name = "μ_1" if kind == "augment" else "μ"
            checks.append(_check(f"{label}: E|μ_t−{centre_name}|²/tr Σ, last {s.tail} gens",
                                 drift[tail].mean(0), V))
            if kind == "fresh":
                checks.append(_check(f"{label}: E[dist(G^t)], last {s.tail} gens", dist[tail].mean(0), None))
    progress(len(plan), len(plan), "done")
    summary = pd.DataFrame(checks)
    fresh = summary[summary["quantity"].str.contains("fresh") & summary["quantity"].str.contains("dist")]
    headline = {
        "fully-synthetic MLE: E[tr Σ_T]/tr Σ (measured)": float(summary.iloc[0]["measured"]),
        "fully-synthetic MLE: E[tr Σ_T]/tr Σ (theory)": float(summary.iloc[0]["predicted"]),
        "fresh loop: E[dist] limit, smallest first set": float(fresh.iloc[0]["measured"]),
        "fresh loop: E[dist] limit, largest first set": float(fresh.iloc[-1]["measured"]),
        "largest |z| against theory": float(summary["z"].abs().max()),
    }
    notes = [f"{s.seeds} seeds; ± is one standard error over seeds; z = (measured − predicted) / SE.",
             "dist(G^t) = closed-form W2 between N(μ_t, λΣ_t) and p_r = N(0, [[2,1],[1,2]])."]
    return Result(pd.DataFrame(rows), summary, headline, lambda: figure(curves, s, gen), notes)


def _check(quantity: str, per_seed: torch.Tensor, predicted) -> dict:
    m, se = mean_se(per_seed)
    p = float("nan") if predicted is None else float(predicted)
    return dict(quantity=quantity, measured=m, se=se, predicted=p,
                z=(m - p) / se if se > 0 and p == p else float("nan"))


def figure(curves: dict, s: Settings, gen: torch.Tensor):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = matplotlib.colormaps["viridis"]
    (a, b, c), (d, e, f) = ax
    for i, bias in enumerate(s.biases):
        col = colors(i / max(1, len(s.biases)))
        k = ("fully-synthetic", "mle", bias, None)
        a.plot(gen, curves[k]["cov"].mean(1), color=col, label=f"MLE λ={bias:g}")
        a.plot(gen, curves[k]["cov_theory"], "k--", lw=0.8)
        k = ("augment", "mle", bias, None)
        e.plot(gen, curves[k]["cov"].mean(1), color=col, label=f"λ={bias:g}")
        e.axhline(curves[k]["cov_limit"], color=col, ls="--", lw=0.8)
    ku = ("fully-synthetic", "unbiased", 1.0, None)
    a.plot(gen, curves[ku]["cov"].mean(1), color="C3", label="unbiased λ=1: mean")
    a.plot(gen, curves[ku]["cov"].median(1).values, color="C3", ls=":", label="unbiased λ=1: median")
    a.set(yscale="log", xlabel="generation t", ylabel="tr Σ_t / tr Σ",
          title="fully synthetic: covariance collapse\n(dashed: c_{n_r}(λ c_{n_s})^{t−1})")
    a.legend(fontsize=8)
    for k, col in ((ku, "C3"), (("fully-synthetic", "mle", 1.0, None), "C0")):
        b.plot(gen, curves[k]["drift"].mean(1), color=col, label=f"{k[1]} λ=1")
        b.plot(gen, curves[k]["drift_theory"], "k--", lw=0.8)
    b.set(xlabel="generation t", ylabel="E|μ_t − μ|² / tr Σ",
          title="fully synthetic: the mean's random walk\n(dashed: theory, linear in t when unbiased)")
    b.legend(fontsize=8)
    kf, ka = ("fully-synthetic", "mle", 1.0, None), ("augment", "mle", 1.0, None)
    c.plot(gen, curves[kf]["dist"].mean(1), color="C0", label="fully synthetic")
    c.plot(gen, curves[ka]["dist"].mean(1), color="C1", label="synthetic augmentation")
    for n0 in s.initial_sizes:
        c.plot(gen, curves[("fresh", "mle", 1.0, n0)]["dist"].mean(1), ls="-.", label=f"fresh, |D_r^1|={n0}")
    c.set(yscale="log", xlabel="generation t", ylabel="E[dist(G^t, p_r)] (closed-form W2)",
          title=f"the three loops (|D_r|={s.loop.n_real}, |D_s|={s.loop.n_synth}, MLE, λ=1)")
    c.legend(fontsize=8)
    d.plot(gen, curves[ka]["drift"].mean(1), color="C1", label="augment: E|μ_t − μ_1|²")
    d.axhline(curves[ka]["drift_limit"], color="C1", ls="--", lw=0.8, label="AR(1) limit")
    d.plot(gen, ((curves[kf]["drift"]) - curves[kf]["drift"][:1]).mean(1), color="C0", alpha=0.6,
           label="fully synthetic, for contrast")
    d.set(yscale="log", xlabel="generation t", ylabel="E|μ_t − μ_1|² / tr Σ",
          title="synthetic augmentation: bounded drift")
    d.legend(fontsize=8)
    e.set(xlabel="generation t", ylabel="tr Σ_t / tr Σ",
          title="sampling bias λ in the augment loop\n(dashed: the biased fixed point)")
    e.legend(fontsize=8)
    for i, n0 in enumerate(s.initial_sizes):
        k = ("fresh", "mle", 1.0, n0)
        f.plot(gen, curves[k]["drift"].mean(1), label=f"|D_r^1| = {n0}")
    f.axhline(curves[("fresh", "mle", 1.0, s.initial_sizes[0])]["drift_limit"], color="k", ls="--", lw=0.8,
              label="limit (independent of |D_r^1|)")
    f.set(yscale="log", xlabel="generation t", ylabel="E|μ_t − μ|² / tr Σ",
          title=f"fresh data: the limit forgets the first set\n(|D_r^t|={s.loop.n_real}, |D_s|={s.loop.n_synth})")
    f.legend(fontsize=8)
    fig.suptitle(f"MAD loops with the Gaussian fit, {s.seeds} seeds", y=1.0)
    fig.tight_layout()
    return fig
