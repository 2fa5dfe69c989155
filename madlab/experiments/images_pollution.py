"""Paper Figure 6 on real images: a second-generation EDM model trained on real data polluted with
|D_p| samples of the first, standard training against SIMS (section 4.2.2).

ST-I    G^1 = standard training on D_r alone; its samples are the pollution D_p.
SIMS-I  SIMS on top of ST-I (no pollution): the ideal.
ST-P    G^2 = standard training, from scratch, on D_r ∪ D_p.
SIMS-P  SIMS whose base model is ST-P (its auxiliary model: ST-P fine-tuned on ST-P's own samples).
D_p = the first |D_p| of one pool of ST-I samples (nested sets); every base model sees the same
number of images (epochs × |D_r|, as the paper trains its second generation for a fixed budget);
SIMS reports, for each |D_p|, the best mean FID over the grid of w and B, as the paper does.
|D_p| = 0: ST-P is ST-I and SIMS-P is SIMS-I.
"""
from __future__ import annotations

import pandas as pd
import torch

from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.images import Bench, band, estimate, fid_notes, per_seed, trained
from madlab.experiments.image_settings import ImagesPollution as Settings

SCENARIOS = ("ST-I", "SIMS-I", "ST-P", "SIMS-P")


def polluted(real: torch.Tensor, pool: torch.Tensor, n_pollute: int) -> torch.Tensor:
    """D_r ∪ D_p with D_p the first n_pollute images of the ST-I sample pool (nested sets)."""
    return torch.cat([real, pool[:, :n_pollute]], dim=1)


def epochs_for(s: Settings, n_train: int) -> float:
    """The budget on n_train images that sees as many images as ST-I's (kimg budgets are already so)."""
    return s.loop.epochs if s.edm.budget == "kimg" else s.loop.epochs * s.loop.n_real / n_train


def measure_seed(s: Settings, bench: Bench, seed: int, streams, step) -> list[dict]:
    g, backend = streams.keys, bench.backend
    rows = []

    def evaluate(scenario, n_p, model, guide=None, omega=0.0, budget=0.0):
        # the same sampler noise for every model: differences come from the models alone
        x = backend.sample(model, s.evaluation.n_eval, g("eval", 1), guide=guide, omega=omega)
        rows.extend(dict(scenario=scenario, n_pollute=n_p, omega=omega, budget=budget, metric=m,
                         seed=seed, value=v[0]) for m, v in bench.fid(x).items())

    def sims(scenario, n_p, base):
        step(f"{scenario} |D_p| = {n_p}: S = {s.algo.n_aux} samples of the base")
        synthetic = backend.sample(base, s.algo.n_aux, g("aux-sample", 1, n_p))
        for i, budget in enumerate(s.budgets):
            step(f"{scenario} |D_p| = {n_p}: auxiliary model, B = {budget:g}")
            aux = bench.model(f"seed{seed}-aux-{n_p}-{i}",
                              lambda: backend.train(base, synthetic, budget, g("finetune", 1 + i, n_p)))
            for omega in s.omegas:
                evaluate(scenario, n_p, base, aux, omega, budget)

    real = bench.target.sample(s.loop.n_real, g("real", 1))
    step(f"ST-I: {s.loop.epochs:g} {s.edm.budget} on |D_r| = {s.loop.n_real}")
    st_i = bench.model(f"seed{seed}-st-i",
                       lambda: backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1)))
    evaluate("ST-I", 0, st_i)
    sims("SIMS-I", 0, st_i)
    sizes = [n for n in s.sizes() if n > 0]
    if sizes:
        pool = backend.sample(st_i, max(sizes), g("synth", 1))
    for n_p in sizes:
        data = polluted(real, pool, n_p)
        budget = epochs_for(s, data.shape[1])
        step(f"ST-P |D_p| = {n_p}: {budget:.3g} {s.edm.budget} on {data.shape[1]} images")
        st_p = bench.model(f"seed{seed}-st-p-{n_p}",
                           lambda: backend.train(backend.init(g("init", 1)), data, budget, g("train", 2, n_p)))
        evaluate("ST-P", n_p, st_p)
        sims("SIMS-P", n_p, st_p)
    return rows


def units(s: Settings) -> int:
    return len(s.sizes()) * (2 + len(s.budgets))


def workload(s: Settings) -> dict:
    """What the default measures, counted (madlab experiment --dry-run)."""
    sizes = s.sizes()
    n_r, n_eval = s.loop.n_real, s.evaluation.n_eval
    train = trained(s, s.loop.epochs, n_r) + sum(trained(s, epochs_for(s, n_r + n), n_r + n) for n in sizes if n > 0)
    train += len(sizes) * sum(trained(s, b, s.algo.n_aux) for b in s.budgets)
    sample = len(sizes) * (n_eval + s.algo.n_aux + len(s.budgets) * len(s.omegas) * 2 * n_eval) + max(sizes)
    return estimate(s, train, sample)


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    s = settings.validate()
    bench = Bench(s, "images-pollution")
    return per_seed(s, bench, units(s), progress, lambda seed, st, step: measure_seed(s, bench, seed, st, step))


def best_sims(frame: pd.DataFrame) -> tuple[float, float, pd.Series]:
    """(w, B, per-seed values) of the (w, B) with the lowest mean over seeds."""
    omega, budget = frame.groupby(["omega", "budget"])["value"].mean().idxmin()
    pick = frame[(frame.omega == omega) & (frame.budget == budget)].sort_values("seed")["value"]
    return float(omega), float(budget), pick


def summarise(table: pd.DataFrame, s: Settings) -> tuple[pd.DataFrame, dict]:
    rows = []
    for metric in s.evaluation.metric:
        t = table[table.metric == metric]
        st_i = t[t.scenario == "ST-I"].sort_values("seed")["value"]
        w_i, b_i, sims_i = best_sims(t[t.scenario == "SIMS-I"])
        for n_p in s.sizes():
            if n_p == 0:
                st_p, (w_p, b_p, sims_p) = st_i, (w_i, b_i, sims_i)
            else:
                st_p = t[(t.scenario == "ST-P") & (t.n_pollute == n_p)].sort_values("seed")["value"]
                w_p, b_p, sims_p = best_sims(t[(t.scenario == "SIMS-P") & (t.n_pollute == n_p)])
            row = dict(metric=metric, n_pollute=n_p, pollute_share=n_p / s.loop.n_real)
            for name, values in (("ST-I", st_i), ("SIMS-I", sims_i), ("ST-P", st_p), ("SIMS-P", sims_p)):
                row[name], row[f"{name} lo"], row[f"{name} hi"] = band(values.to_numpy())
            row |= {"SIMS-P w": w_p, "SIMS-P B": b_p,
                    "SIMS-P - ST-I": float(sims_p.to_numpy().mean() - st_i.to_numpy().mean())}
            rows.append(row)
    summary = pd.DataFrame(rows)
    main = summary[summary.metric == s.evaluation.metric[0]]
    gap = main["SIMS-P - ST-I"].tolist()
    beats = [n for n, v in zip(main.n_pollute, gap) if v < 0]
    fails = [n for n, v in zip(main.n_pollute, gap) if v >= 0]
    below = [n for n in beats if not fails or n < min(fails)]
    headline = {f"{s.evaluation.metric[0]} ST-I": float(main["ST-I"].iloc[0]),
                f"{s.evaluation.metric[0]} SIMS-I (best) / ST-I": float(main["SIMS-I"].iloc[0] / main["ST-I"].iloc[0]),
                "D_p sizes where mean SIMS-P < mean ST-I": ", ".join(map(str, beats)) or "none",
                "largest D_p size up to which SIMS-P beats ST-I": (
                    "none: SIMS-I itself does not beat ST-I" if 0 in fails
                    else f"{max(below)} ({max(below) / s.loop.n_real:.0%} of D_r; first failure: "
                         f"{min(fails) if fails else 'none on the grid'})")}
    return summary, headline


def result(table: pd.DataFrame, s: Settings) -> Result:
    from madlab.experiments.images_fid import trust_table

    summary, headline = summarise(table, s)
    notes = fid_notes(s) + [
        f"SIMS rows: the best (w, B) for each |D_p| by the mean over seeds (w in {s.omegas}, B in "
        f"{s.budgets} {s.edm.budget} on |S| = {s.algo.n_aux}); a minimum over a grid is biased low by noise.",
        "|D_p| = 0: ST-P is ST-I and SIMS-P is SIMS-I."]
    return Result(table, summary, headline, lambda: figure(summary, s), notes,
                  tables={"fid-floor": trust_table(s)})


def figure(summary: pd.DataFrame, s: Settings):
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(summary.metric))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 4.4), squeeze=False)
    styles = {"ST-I": ("C0", "--", "$G^1_{ST-I}$"), "SIMS-I": ("C2", "--", "$G^1_{SIMS-I}$ (best w, B)"),
              "ST-P": ("C3", "-o", "$G^2_{ST-P}$"), "SIMS-P": ("C1", "-s", "$G^2_{SIMS-P}$ (best w, B)")}
    for ax, metric in zip(axes[0], metrics):
        m = summary[summary.metric == metric]
        x = m["pollute_share"] * 100
        for name, (col, style, label) in styles.items():
            ax.plot(x, m[name], style, color=col, label=label, ms=4)
            ax.fill_between(x, m[f"{name} lo"], m[f"{name} hi"], color=col, alpha=0.15)
        ax.set(xlabel="|D_p| (% of |D_r|)", ylabel=metric, title=f"{metric}  (|D_r| = {s.loop.n_real})")
        ax.legend(fontsize=8)
    fig.suptitle(f"Pollution (paper Fig. 6) on {s.edm_config().dataset}: {s.seeds} seeds, bands = 95 % "
                 "bootstrap over seeds", fontsize=10)
    fig.tight_layout()
    return fig
