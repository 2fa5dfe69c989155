"""SIMS on the Gaussian fit: exact predictions (analysis.gaussian_theory) against the simulated loop.

Parameter space (Eq. 6, `sims-param`): theta = (1 + w) theta_base - w theta_aux with theta = (mu, Sigma).
Exact in every loop kind: E[tr S_t] and the mean's error for any w, n_r, m = |D_s|, n_s, lambda;
w* = (1 / (lambda c_m) - 1) / (1 - lambda c_{n_s}) (n_s / (m - 1) for the MLE at lambda = 1) holds
E[S_t] constant in the fully synthetic loop.
Score space (Eq. 5, `sims`): the guided precision (1 + w) P_b - w P_aux has an exact expectation in
the fully synthetic loop (inverse-Wishart means); its covariance and every pooled loop have none,
so those rows are simulation alone.
The map: for each (w, |D_s|) whether SIMS-param prevents (|E tr S_T / tr Sigma - 1| <= 5 %),
mitigates (nearer 1 than standard training on the log scale) or worsens the covariance collapse,
from the theory and from the simulation.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from analysis import gaussian_theory as th
from analysis.distances import gaussian_w2
from loops import Loop, SeedStreams, make_algorithm
from madlab.experiments.common import Progress, Result, mean_se, no_progress
from madlab.experiments.toy_settings import SimsTheory as Settings
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian


def _trace(S: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(S, dim1=-2, dim2=-1).sum(-1)


class CountingFit(GaussianFit):
    """The Gaussian fit, counting the parameter-space combinations that were not positive definite
    (GaussianFit floors those, where the closed form no longer holds)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.combined, self.floored = 0, 0

    def combine(self, models, weights):
        raw = sum(w * m[1] for m, w in zip(models, weights))
        self.combined += raw.shape[0]
        self.floored += int((torch.linalg.eigvalsh(raw)[..., 0] <= 0).sum())
        return super().combine(models, weights)


def sampled_models(kind: str, algo: str, omega: float, bias: float, streams: SeedStreams, gens: int,
                   n_real: int, n_synth: int, n_aux: int, estimator: str = "mle", backend=None):
    """(mu [T, N, d], S [T, N, d, d], base mean of generation 1 [N, d]) of the model each
    generation samples from (N(mu, lambda S)): the combination for sims-param, the guided Gaussian
    for sims, the fit for standard."""
    backend = backend or GaussianFit(estimator=estimator, bias=bias)
    algorithm = make_algorithm(algo, epochs=1, omega=omega, n_aux=n_aux, aux_epochs=1)
    loop = Loop(kind, algorithm, backend, paper_gaussian(), n_real, n_synth, gens, n_eval=2)
    mus, covs, first = [], [], None
    for rec in loop.run(streams, lambda x, t: {}, keep_models=True):
        m = rec.model
        if first is None:
            first = m.model[0]
        if m.sampling_model is not None:
            mu, S = m.sampling_model
        elif m.guide is not None and m.omega != 0:
            mu, S = GaussianFit.guided(m.model, m.guide, m.omega)
        else:
            mu, S = m.model
        mus.append(mu)
        covs.append(S)
    return torch.stack(mus), torch.stack(covs), first


def _check(quantity: str, per_seed, predicted) -> dict:
    m, se = mean_se(per_seed)
    p = float("nan") if predicted is None else float(predicted)
    return dict(quantity=quantity, measured=m, se=se, predicted=p,
                z=(m - p) / se if se > 0 and p == p else float("nan"))


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    s = settings.validate()
    target = paper_gaussian()
    tr, d = float(_trace(target.cov)), target.cov.shape[-1]
    streams = SeedStreams(range(s.first_seed, s.first_seed + s.seeds))
    w_star = {b: th.omega_star(s.loop.n_synth, s.algo.n_aux, b) for b in s.biases}
    plan = []
    for kind in s.loops:
        for b in s.biases:
            for w in [*s.omegas, w_star[b]]:
                plan.append(("sims-param", kind, w, b))
    for b in s.biases:
        plan.append(("sims", "fully-synthetic", s.omegas[0], b))
    for kind in [k for k in s.loops if k != "fully-synthetic"]:   # no closed form: simulation alone
        plan.append(("sims", kind, s.omegas[0], 1.0))
    cells = [(kind, w, m) for kind in ("fully-synthetic", "augment") for m in s.map_sizes
             for w in [0.0, *s.map_omegas]]
    total = len(plan) + len(cells)
    rows, checks, curves = [], [], {}
    T = s.loop.gens
    for i, (algo, kind, w, b) in enumerate(plan):
        progress(i, total, f"{algo} {kind} w={w:.3g} λ={b:g}")
        mu, S, first = sampled_models(kind, algo, w, b, streams, T, s.loop.n_real, s.loop.n_synth, s.algo.n_aux)
        cov = _trace(S) / tr                                              # [T, N]
        drift = (mu ** 2).sum(-1) / tr                                    # true mean is 0
        drift_real = ((mu - first) ** 2).sum(-1) / tr
        dist = gaussian_w2(mu, b * S, target.mean.expand_as(mu), target.cov.expand_as(S))
        star = " (w*)" if w == w_star[b] and algo == "sims-param" else ""
        label = f"{algo} {kind} w={w:.3g}{star} λ={b:g}"
        curves[(algo, kind, w, b)] = {"cov": cov.mean(1), "drift": drift.mean(1)}
        for name, values in (("cov", cov), ("drift", drift), ("drift_real", drift_real), ("dist", dist)):
            for t in range(T):
                m_, se_ = mean_se(values[t])
                rows.append(dict(algo=algo, loop=kind, omega=w, bias=b, generation=t + 1, quantity=name,
                                 mean=m_, se=se_))
        if algo == "sims-param":
            pred = th.param_moments(kind, T, s.loop.n_real, s.loop.n_synth, omega=w, n_aux=s.algo.n_aux, bias=b)
            curves[(algo, kind, w, b)] |= {"cov_theory": pred["cov"], "drift_theory": pred["drift"]}
            checks.append(_check(f"{label}: E[tr S_T]/tr Σ", cov[-1], pred["cov"][-1]))
            if kind == "augment":
                checks.append(_check(f"{label}: E|μ_T−mean(D_r)|²/tr Σ", drift_real[-1], pred["drift_real"][-1]))
            else:
                checks.append(_check(f"{label}: E|μ_T−μ|²/tr Σ", drift[-1], pred["drift"][-1]))
        elif kind == "fully-synthetic":
            prec = torch.einsum("ij,tnji->tn", target.cov, torch.linalg.inv(S)) / d   # tr(Σ P_t) / d
            pred = th.score_precision(T, s.loop.n_real, s.loop.n_synth, w, s.algo.n_aux, b, d)
            checks.append(_check(f"{label}: E[tr(Σ P_T)]/d", prec[-1], pred[-1]))
            checks.append(_check(f"{label}: E[tr S_T]/tr Σ (no closed form)", cov[-1], None))
        else:
            checks.append(_check(f"{label}: E[tr S_T]/tr Σ (no closed form)", cov[-1], None))
        if w == s.omegas[0] and b == 1.0:
            checks.append(_check(f"{label}: E[W2(G^T, p_r)] (no closed form)", dist[-1], None))
    # the (w, |D_s|) map: theory's class against the simulation's
    map_streams = SeedStreams(range(s.first_seed, s.first_seed + s.map_seeds))
    cell_rows, standard = [], {}
    for j, (kind, w, m) in enumerate(cells):
        progress(len(plan) + j, total, f"map {kind} w={w:g} |D_s|={m}")
        algo = "standard" if w == 0 else "sims-param"
        counting = CountingFit()
        _, S, _ = sampled_models(kind, algo, w, 1.0, map_streams, T, s.loop.n_real, m, s.algo.n_aux, backend=counting)
        ratio = _trace(S[-1]) / tr
        sim, se = mean_se(ratio)
        pred = float(th.param_moments(kind, T, s.loop.n_real, m, omega=w, n_aux=s.algo.n_aux)["cov"][-1])
        if w == 0:
            standard[(kind, m)] = (pred, sim)
        floored = counting.floored / counting.combined if counting.combined else 0.0
        cell_rows.append(dict(loop=kind, omega=w, n_synth=m, predicted=pred, measured=sim, se=se,
                              z=(sim - pred) / se, floored=floored,
                              theory="standard" if w == 0 else th.classify(pred, standard[(kind, m)][0], s.tolerance),
                              simulation="standard" if w == 0 else th.classify(sim, standard[(kind, m)][1], s.tolerance)))
    progress(total, total, "done")
    summary = pd.DataFrame(checks)
    cmap = pd.DataFrame(cell_rows)
    exact = cmap[cmap["floored"] == 0]          # the closed form holds where S never needed a floor
    sims_cells = exact[exact["omega"] > 0]
    agree = float((sims_cells["theory"] == sims_cells["simulation"]).mean())
    z = summary["z"].abs()
    headline = {
        "w* (λ=1) = n_s/(m−1)": w_star[1.0] if 1.0 in w_star else float("nan"),
        "checks against theory": int(z.notna().sum()),
        "largest |z| against theory": float(z.max()),
        "largest |z| in the map, cells never floored": float(exact["z"].abs().max()),
        "SIMS map cells never floored": f"{len(sims_cells)} of {int((cmap['omega'] > 0).sum())}",
        "of those, cells where theory and simulation classify alike": agree,
    }
    notes = [f"{s.seeds} seeds ({s.map_seeds} per map cell); ± is one standard error over seeds; "
             "z = (measured − predicted) / SE.",
             f"|D_r|={s.loop.n_real}, |D_s|={s.loop.n_synth}, n_s={s.algo.n_aux}, T={T}; S_t is the covariance "
             "parameter of the model G^t samples from (N(μ_t, λ S_t)); the augment drift is measured from "
             "mean(D_r) (the standard G^1's mean).",
             "Score-space SIMS: only the precision has an exact expectation (fully synthetic loop); "
             "the covariance and the pooled loops are simulation alone.",
             "Map: prevented = |E tr S_T/tr Σ − 1| ≤ "
             f"{s.tolerance:g}; mitigated = nearer 1 than standard training on a log scale; else worse. "
             "floored = share of seed-generations whose (1+w)Σ_b − wΣ_aux was not positive definite "
             "(GaussianFit floors it): the closed form assumes 0; large w against n_s leaves it. "
             "w = 0 rows: standard training, the reference of each |D_s|.",
             "The rows share their seeds, so their z are correlated (the mean-error rows move together)."]
    table = pd.DataFrame(rows)
    return Result(table, summary, headline, lambda: figure(curves, cmap, s, w_star), notes,
                  tables={"map": _map_table(cmap)})


def _map_table(cmap: pd.DataFrame) -> pd.DataFrame:
    cmap = cmap.copy()
    cmap["agree"] = np.where(cmap["theory"] == cmap["simulation"], "yes", "no")
    return cmap


def figure(curves: dict, cmap: pd.DataFrame, s: Settings, w_star: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(20, 4.6))
    gen = np.arange(1, s.loop.gens + 1)
    for k, col in zip([k for k in curves if k[0] == "sims-param" and k[1] == "fully-synthetic" and k[3] == 1.0],
                      ("C0", "C1", "C2", "C3")):
        ax[0].plot(gen, curves[k]["cov"], color=col, label=f"w={k[2]:.3g}")
        ax[0].plot(gen, curves[k]["cov_theory"], "k--", lw=0.8)
        ax[1].plot(gen, curves[k]["drift"], color=col, label=f"w={k[2]:.3g}")
        ax[1].plot(gen, curves[k]["drift_theory"], "k--", lw=0.8)
    base = th.param_moments("fully-synthetic", s.loop.gens, s.loop.n_real, s.loop.n_synth)
    ax[0].plot(gen, base["cov"], color="grey", label="standard (theory)")
    ax[0].set(xlabel="generation t", ylabel="E[tr S_t] / tr Σ",
              title="fully synthetic, SIMS-param: covariance\n(dashed: theory)")
    ax[0].legend(fontsize=8)
    ax[1].set(xlabel="generation t", ylabel="E|μ_t − μ|² / tr Σ")
    ax[1].set_title("fully synthetic, SIMS-param: the mean's walk\n(SIMS adds w² λ tr Σ_b / n_s a generation)",
                    fontsize=9)
    ax[1].legend(fontsize=8)
    colors = {"prevented": 2, "mitigated": 1, "worse": 0}
    for a, kind in zip(ax[2:], ("fully-synthetic", "augment")):
        part = cmap[cmap["loop"] == kind]
        part = part[part["omega"] > 0]
        grid = part.pivot(index="n_synth", columns="omega", values="theory").replace(colors).astype(float)
        a.imshow(grid.values, cmap="RdYlGn", vmin=0, vmax=2, origin="lower", aspect="auto")
        a.set_xticks(range(len(grid.columns)), [f"{w:g}" for w in grid.columns])
        a.set_yticks(range(len(grid.index)), [str(m) for m in grid.index])
        sim = part.pivot(index="n_synth", columns="omega", values="simulation")
        for yi, m in enumerate(grid.index):
            for xi, w in enumerate(grid.columns):
                a.text(xi, yi, sim.loc[m, w][:4], ha="center", va="center", fontsize=7)
        a.set(xlabel="w", ylabel="|D_s|")
        a.set_title(f"{kind}: SIMS-param vs standard, T={s.loop.gens}\ncolour: theory (green prevented, "
                    "yellow mitigated, red worse)\ntext: simulation", fontsize=9)
    fig.tight_layout()
    return fig
