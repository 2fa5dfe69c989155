"""Paper Figure 4 on real images: SIMS self-improves an EDM model, FID against w and budget B.

Per seed: the base model G = A(D_r) is trained on |D_r| real images; S = n_aux of its own samples;
for each budget B the auxiliary model is the base fine-tuned on S for B (epochs over S, or kimg),
each budget its own fine-tuning from the base; every (B, w) is sampled with
D = D_base + w (D_base - D_aux) from the same sampler noise (common random numbers), so w = 0 is
the base model bit for bit and w = -1 the auxiliary model alone. B = 0 would be the base model at
every w. Top row of the figure: FID against w for each B; bottom row: FID against B for three w.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from madlab.experiments.common import Progress, Result, no_progress, require
from madlab.experiments.images import (Bench, ImageSettings, cifar_edm, estimate, fid_notes, per_seed,
                                       ratio_band, summarise_bands, trained)


@dataclass
class Settings(ImageSettings):
    n_aux: int = 1000                 # |S|: base samples the auxiliary model is fine-tuned on
    budgets: list[float] = field(default_factory=lambda: [2.0, 5.0, 10.0])  # B: epochs over S (or kimg)
    omegas: list[float] = field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    omegas_vs_budget: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # the bottom row's w

    def validate(self) -> "Settings":
        self.validate_images()
        require(self.n_aux >= 1, f"n_aux must be positive, got {self.n_aux}")
        require(bool(self.budgets) and all(b > 0 for b in self.budgets), f"budgets must be positive, got {self.budgets}")
        require(0.0 in self.omegas and any(w > 0 for w in self.omegas),
                "omegas must include 0 (the base model) and some w > 0 (SIMS)")
        require(set(self.omegas_vs_budget) <= set(self.omegas), "omegas_vs_budget must be among omegas")
        return self


SCALES = {
    "smoke": Settings(seeds=3, n_real=300, epochs=3, n_aux=100, budgets=[1.0, 2.0, 4.0], n_eval=100,
                      omegas=[-1.0, 0.0, 1.0, 2.0], omegas_vs_budget=[1.0, 2.0]),
    "quick": Settings(),
    "paper": Settings(edm=cifar_edm(), n_real=50_000, epochs=200_000, n_aux=50_000,
                      budgets=[10_000.0, 20_000.0, 40_000.0], n_eval=50_000, device="cuda"),
}


def measure_seed(s: Settings, bench: Bench, seed: int, streams, step) -> list[dict]:
    """One seed's rows: (budget, omega, metric, value); w = 0 is sampled once and listed under each B."""
    g, backend = streams.keys, bench.backend
    real = bench.target.sample(s.n_real, g("real", 1))
    step(f"base model: {s.epochs:g} {s.edm.budget} on |D_r| = {s.n_real}")
    base = bench.model(f"seed{seed}-base", lambda: backend.train(backend.init(g("init", 1)), real, s.epochs, g("train", 1)))
    step(f"S: {s.n_aux} base samples; w = 0")
    synthetic = backend.sample(base, s.n_aux, g("aux-sample", 1))
    rows = []
    base_fid = bench.fid(backend.sample(base, s.n_eval, g("eval", 1)))
    for i, budget in enumerate(s.budgets):
        step(f"auxiliary model B = {budget:g} {s.edm.budget} on |S| = {s.n_aux}")
        aux = bench.model(f"seed{seed}-aux{i}", lambda: backend.train(base, synthetic, budget, g("finetune", 1, i)))
        for omega in s.omegas:
            if omega == 0:
                values = base_fid
            else:
                step(f"B = {budget:g}, w = {omega:g}")
                values = bench.fid(backend.sample(base, s.n_eval, g("eval", 1), guide=aux, omega=omega))
            rows += [dict(budget=budget, omega=omega, metric=m, seed=seed, value=v[0]) for m, v in values.items()]
    return rows


def units(s: Settings) -> int:
    return 2 + len(s.budgets) * (1 + sum(o != 0 for o in s.omegas))


def workload(s: Settings) -> dict:
    """What the default measures, counted (madlab experiment --dry-run)."""
    train = trained(s, s.epochs, s.n_real) + sum(trained(s, b, s.n_aux) for b in s.budgets)
    sample = s.n_aux + s.n_eval + len(s.budgets) * sum(2 * s.n_eval for w in s.omegas if w != 0)
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
    for metric in s.metrics:
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
