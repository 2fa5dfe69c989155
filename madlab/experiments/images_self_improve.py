"""Paper Figure 4 on real images: SIMS self-improves an EDM model, FID against w and budget B.

Per seed: the base model G = A(D_r) is trained on |D_r| real images; S = n_aux of its own samples;
for each budget B the auxiliary model is the base fine-tuned on S for B (epochs over S, or kimg),
each budget its own fine-tuning from the base; every (B, w) is sampled with
D = D_base + w (D_base - D_aux) from the same sampler noise (common random numbers), so w = 0 is
the base model bit for bit and w = -1 the auxiliary model alone. B = 0 would be the base model at
every w. Top row of the figure: FID against w for each B; bottom row: FID against B for three w.
"""
from __future__ import annotations

import pandas as pd

from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.images import Bench, estimate, fid_notes, per_seed, ratio_band, summarise_bands, trained
from madlab.experiments.image_settings import ImagesSelfImprove as Settings


def measure_seed(s: Settings, bench: Bench, seed: int, streams, step) -> list[dict]:
    """One seed's rows: (budget, omega, metric, value); w = 0 is sampled once and listed under each B."""
    g, backend = streams.keys, bench.backend
    real = bench.target.sample(s.loop.n_real, g("real", 1))
    step(f"base model: {s.loop.epochs:g} {s.edm.budget} on |D_r| = {s.loop.n_real}")
    base = bench.model(f"seed{seed}-base",
                       lambda: backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1)))
    step(f"S: {s.algo.n_aux} base samples; w = 0")
    synthetic = backend.sample(base, s.algo.n_aux, g("aux-sample", 1))
    rows = []
    base_fid = bench.fid(backend.sample(base, s.evaluation.n_eval, g("eval", 1)))
    for i, budget in enumerate(s.budgets):
        step(f"auxiliary model B = {budget:g} {s.edm.budget} on |S| = {s.algo.n_aux}")
        aux = bench.model(f"seed{seed}-aux{i}", lambda: backend.train(base, synthetic, budget, g("finetune", 1, i)))
        for omega in s.omegas:
            if omega == 0:
                values = base_fid
            else:
                step(f"B = {budget:g}, w = {omega:g}")
                values = bench.fid(backend.sample(base, s.evaluation.n_eval, g("eval", 1), guide=aux, omega=omega))
            rows += [dict(budget=budget, omega=omega, metric=m, seed=seed, value=v[0]) for m, v in values.items()]
    return rows


def units(s: Settings) -> int:
    return 2 + len(s.budgets) * (1 + sum(o != 0 for o in s.omegas))


def workload(s: Settings) -> dict:
    """What the default measures, counted (madlab experiment --dry-run)."""
    train = trained(s, s.loop.epochs, s.loop.n_real) + sum(trained(s, b, s.algo.n_aux) for b in s.budgets)
    n_eval = s.evaluation.n_eval
    sample = s.algo.n_aux + n_eval + len(s.budgets) * sum(2 * n_eval for w in s.omegas if w != 0)
    return estimate(s, train, sample)


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    s = settings.validate()
    bench = Bench(s, "images-self-improve")
    return per_seed(s, bench, units(s), progress, lambda seed, st, step: measure_seed(s, bench, seed, st, step))


def result(table: pd.DataFrame, s: Settings) -> Result:
    from madlab.experiments.images_fid import trust_table

    summary = summarise_bands(table, ["metric", "budget", "omega"])
    headline = {}
    for metric in s.evaluation.metric:
        t = table[table.metric == metric]
        means = t[t.omega > 0].groupby(["budget", "omega"])["value"].mean()  # SIMS proper: w > 0
        budget, omega = means.idxmin()
        base = t[(t.omega == 0) & (t.budget == s.budgets[0])].sort_values("seed")["value"].to_numpy()
        best = t[(t.omega == omega) & (t.budget == budget)].sort_values("seed")["value"].to_numpy()
        r, lo, hi = ratio_band(best, base)
        headline[f"{metric} base (w = 0)"] = float(base.mean())
        headline[f"{metric} best (B, w)"] = f"B = {budget:g}, w = {omega:g}: {best.mean():.4g}"
        headline[f"{metric} best / base [95% band]"] = f"{r:.3f} [{lo:.3f}, {hi:.3f}]"
    notes = fid_notes(s) + [
        f"best (B, w): the lowest mean over the grid of w > 0 (w in {s.omegas}, B in {s.budgets} {s.edm.budget}); "
        "a minimum over a grid is biased low by noise.",
        "w = 0 is the base model (sampled once per seed, listed under every B)."]
    return Result(table, summary, headline, lambda: figure(summary, s), notes,
                  tables={"fid-floor": trust_table(s)})


def figure(summary: pd.DataFrame, s: Settings):
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(summary.metric))
    fig, axes = plt.subplots(2, len(metrics), figsize=(5.2 * len(metrics), 7.4), squeeze=False)
    for j, metric in enumerate(metrics):
        m = summary[summary.metric == metric]
        ax = axes[0, j]
        for i, budget in enumerate(s.budgets):
            t = m[m.budget == budget].sort_values("omega")
            ax.plot(t.omega, t["mean"], "-o", ms=3, color=f"C{i}", label=f"B = {budget:g} {s.edm.budget}")
            ax.fill_between(t.omega, t.lo, t.hi, color=f"C{i}", alpha=0.2)
        ax.axvline(0, color="grey", lw=0.6)
        ax.set(xlabel="guidance w", ylabel=f"{metric}", title=f"{metric} against w (w = 0: base model)")
        ax.legend(fontsize=8)
        ax = axes[1, j]
        base = m[(m.omega == 0) & (m.budget == s.budgets[0])]["mean"].iloc[0]
        for i, omega in enumerate(s.omegas_vs_budget):
            t = m[m.omega == omega].sort_values("budget")
            x = [0.0] + t.budget.tolist()
            ax.plot(x, [base] + t["mean"].tolist(), "-o", ms=3, color=f"C{i + 3}", label=f"w = {omega:g}")
            ax.fill_between(t.budget, t.lo, t.hi, color=f"C{i + 3}", alpha=0.2)
        ax.axhline(base, color="grey", lw=0.6, ls="--", label="base model")
        ax.set(xlabel=f"training budget B ({s.edm.budget} on S; B = 0: the base model)", ylabel=metric,
               title=f"{metric} against B")
        ax.legend(fontsize=8)
    fig.suptitle(f"Self-improvement (paper Fig. 4) on {s.edm_config().dataset}: {s.seeds} seeds, "
                 "bands = 95 % bootstrap over seeds", fontsize=10)
    fig.tight_layout()
    return fig
