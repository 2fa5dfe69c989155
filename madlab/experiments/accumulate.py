"""The accumulate family on the Gaussian fit against its theory (analysis.gaussian_theory).

accumulate (Gerstgrasser et al. 2024): D^t = D_r ∪ D_s^1 ∪ ... ∪ D_s^{t-1}; accumulate-subsample
(Kazdan et al. 2024): |D_r| of those points drawn without replacement. Exact per-generation
E[tr Sigma_t] and E|mu_t - mu|^2 for both (param_moments), and the bound E|mu_t - mu|^2 <=
(pi^2 / 6) tr Sigma / n with |D_s| = |D_r| = n for accumulate (the unbiased fit at lambda = 1 comes
nearest: its covariance stays within 1 % of Sigma). The fully synthetic loop beside them for
contrast: its mean error grows without bound.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import gaussian_theory as th
from loops import SeedStreams
from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.toy_settings import Accumulate as Settings
from madlab.experiments.sims_theory import _check, _trace, sampled_models
from toy.targets import paper_gaussian


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    s = settings.validate()
    target = paper_gaussian()
    tr = float(_trace(target.cov))
    streams = SeedStreams(range(s.first_seed, s.first_seed + s.seeds))
    plan = [(kind, est, b, m) for kind in ("accumulate", "accumulate-subsample") for m in s.n_synth
            for b in s.biases for est in ("mle",)]
    plan += [("accumulate", "unbiased", 1.0, s.loop.n_real), ("fully-synthetic", "mle", 1.0, s.loop.n_real)]
    rows, checks, curves = [], [], {}
    T = s.loop.gens
    for i, (kind, est, b, m) in enumerate(plan):
        progress(i, len(plan), f"{kind} {est} λ={b:g} |D_s|={m}")
        mu, S = sampled_models(kind, "standard", 0.0, b, streams, T, s.loop.n_real, m, 2, estimator=est)[:2]
        cov, drift = _trace(S) / tr, (mu ** 2).sum(-1) / tr
        pred = th.param_moments(kind, T, s.loop.n_real, m, bias=b, estimator=est)
        curves[(kind, est, b, m)] = {"cov": cov.mean(1).numpy(), "drift": drift.mean(1).numpy(),
                                     "cov_theory": pred["cov"], "drift_theory": pred["drift"]}
        label = f"{kind} {est} λ={b:g} |D_s|={m}"
        checks.append(_check(f"{label}: E[tr Σ_T]/tr Σ", cov[-1], pred["cov"][-1]))
        n_r = s.loop.n_real
        checks.append(_check(f"{label}: n_r E|μ_T−μ|²/tr Σ", drift[-1] * n_r, pred["drift"][-1] * n_r))
        for t in range(T):
            for name, values, p in (("cov", cov, pred["cov"]), ("drift", drift, pred["drift"])):
                rows.append(dict(loop=kind, estimator=est, bias=b, n_synth=m, generation=t + 1,
                                 quantity=name, mean=float(values[t].mean()),
                                 se=float(values[t].std() / s.seeds ** 0.5), predicted=float(p[t])))
    progress(len(plan), len(plan), "done")
    summary = pd.DataFrame(checks)
    z = summary["z"].abs()
    acc = [k for k in curves if k[0] == "accumulate" and k[3] == s.loop.n_real]
    worst = max(float(curves[k]["drift"].max()) * s.loop.n_real for k in acc)
    headline = {
        "π²/6 (bound on n_r E|μ_t−μ|²/tr Σ, accumulate, |D_s| = |D_r|)": th.PI2_6,
        "largest measured n_r E|μ_t−μ|²/tr Σ, accumulate, |D_s| = |D_r|, any t": worst,
        "largest |z| against theory": float(z.max()),
    }
    notes = [f"{s.seeds} seeds; ± is one standard error over seeds; z = (measured − predicted) / SE.",
             f"|D_r|={s.loop.n_real}, T={T}; the accumulate-subsample loop trains on |D_r| points a generation.",
             "n_r E|μ_T−μ|²/tr Σ is the mean's error in units of the real-data-only fit's."]
    return Result(pd.DataFrame(rows), summary, headline, lambda: figure(curves, s), notes)


def figure(curves: dict, s: Settings):
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.4))
    gen = np.arange(1, s.loop.gens + 1)
    for i, (k, c) in enumerate(curves.items()):
        if k[2] != 1.0:
            continue
        label = f"{k[0]} {k[1]} |D_s|={k[3]}"
        a.plot(gen, c["drift"] * s.loop.n_real, color=f"C{i}", label=label)
        a.plot(gen, c["drift_theory"] * s.loop.n_real, "k--", lw=0.7)
        b.plot(gen, c["cov"], color=f"C{i}", label=label)
        b.plot(gen, c["cov_theory"], "k--", lw=0.7)
    a.axhline(th.PI2_6, color="k", lw=1, label="π²/6")
    a.set(xlabel="generation t", ylabel="n_r E|μ_t − μ|² / tr Σ", ylim=(0, 4),
          title="the mean's error (dashed: theory)")
    a.legend(fontsize=7)
    b.set(xlabel="generation t", ylabel="E[tr Σ_t] / tr Σ", title="the covariance (dashed: theory)")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig
