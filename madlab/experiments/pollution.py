"""Paper Figure 6 as a toy: a second-generation model trained on real data polluted with |D_p| points.

ST-I    G^1 = standard training on D_r alone; its samples are the pollution D_p.
SIMS-I  SIMS on top of ST-I (no pollution): the ideal.
ST-P    G^2 = standard training on D_r ∪ D_p.
SIMS-P  SIMS whose base model is ST-P.
Every base model sees the same number of training points (epochs × |D_r|), as the paper trains
its second-generation models for a fixed budget; SIMS reports, for each |D_p|, the best
E[dist] over the guidance weights w and auxiliary budgets B (as the paper does).
"""
from __future__ import annotations

import pandas as pd
import torch

from loops import SeedStreams
from madlab.experiments.common import Progress, Result, ddpm_backend, distances, mean_se, no_progress
from madlab.experiments.toy_settings import Pollution as Settings
from toy.targets import paper_gaussian

SCENARIOS = ("ST-I", "SIMS-I", "ST-P", "SIMS-P")


def polluted(real: torch.Tensor, pool: torch.Tensor, n_pollute: int) -> torch.Tensor:
    """D_r ∪ D_p with D_p the first n_pollute points of the ST-I sample pool (nested sets)."""
    return torch.cat([real, pool[:, :n_pollute]], dim=1)


def epochs_for(s: Settings, n_train: int) -> float:
    """Epochs over a set of n_train points that see as many points as ST-I's training."""
    return s.loop.epochs * s.loop.n_real / n_train


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    """The long table of the seeds first_seed .. first_seed + seeds - 1: one row per (scenario,
    |D_p|, w, B, metric, seed), seed innermost (chunks of seeds concatenate into it:
    madlab.experiments.chunks)."""
    s = settings.validate()
    streams, target = SeedStreams(range(s.first_seed, s.first_seed + s.seeds)), paper_gaussian()
    g = streams.keys
    ddpm = s.toy_ddpm           # the toy DDPM's options (learner, batch size, lr)
    backend = ddpm_backend(s.device, learner=ddpm.learner, batch_size=ddpm.batch_size, lr=ddpm.lr)
    sizes = sorted(set(s.n_pollute))
    total = 1 + len(sizes) + (1 + len(sizes)) * len(s.budgets)
    done = 0
    needs_real = any(m in ("w1", "w2") for m in s.evaluation.metric)
    real_eval = target.sample(s.evaluation.n_eval, g("eval-real", 1)) if needs_real else None
    rows = []

    def measure(scenario, n_p, omega, budget, model, guide=None):
        # the same sampler noise for every model: differences come from the models alone
        x = backend.sample(model, s.evaluation.n_eval, g("eval", 1), guide=guide, omega=omega)
        for metric, values in distances(s.evaluation.metric, x, real_eval, target).items():
            rows.extend(dict(scenario=scenario, n_pollute=n_p, omega=omega, budget=budget,
                             seed=streams.seeds[k], metric=metric, value=v)
                        for k, v in enumerate(values.tolist()))

    def sims(scenario, n_p, base):
        nonlocal done
        synthetic = backend.sample(base, s.algo.n_aux, g("aux-sample", 1, n_p))
        for budget in s.budgets:
            progress(done, total, f"{scenario} |D_p|={n_p}: auxiliary model, B = {budget:g} epochs on "
                                  f"|S| = {s.algo.n_aux}")
            aux = backend.train(base, synthetic, budget, g("finetune", 1, n_p))
            for omega in s.omegas:
                measure(scenario, n_p, omega, budget, base, aux)
            done += 1

    real = target.sample(s.loop.n_real, g("real", 1))
    progress(done, total, f"ST-I: {s.loop.epochs:g} epochs on |D_r| = {s.loop.n_real}")
    st_i = backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1))
    done += 1
    measure("ST-I", 0, 0.0, 0.0, st_i)
    sims("SIMS-I", 0, st_i)
    pool = backend.sample(st_i, max(sizes), g("synth", 1))
    for n_p in sizes:
        data = polluted(real, pool, n_p)
        progress(done, total, f"ST-P |D_p|={n_p}: {epochs_for(s, data.shape[1]):.3g} epochs on {data.shape[1]} points")
        st_p = backend.train(backend.init(g("init", 1)), data, epochs_for(s, data.shape[1]), g("train", 2, n_p))
        done += 1
        measure("ST-P", n_p, 0.0, 0.0, st_p)
        sims("SIMS-P", n_p, st_p)
    progress(total, total, "done")
    return pd.DataFrame(rows)


def result(table: pd.DataFrame, s: Settings) -> Result:
    """Summary, headline, notes and figure of the whole table (all seeds)."""
    summary, headline = summarise(table, s)
    notes = [f"{s.seeds} seeds; mean over seeds ± one standard error; every model sampled with the same noise.",
             f"SIMS rows: the best (w, B) for each |D_p| by the mean {s.evaluation.metric[0]} over seeds "
             f"(w in {s.omegas}, B in {s.budgets} epochs on |S| = {s.algo.n_aux}); the minimum over a "
             "grid is biased low by noise.",
             "|D_p| = 0: ST-P is ST-I and SIMS-P is SIMS-I."]
    return Result(table, summary, headline, lambda: figure(summary, s, headline), notes)


def best_sims(frame: pd.DataFrame) -> tuple[float, float, pd.Series]:
    """(omega, budget, per-seed values) of the (w, B) with the lowest mean over seeds."""
    mean = frame.groupby(["omega", "budget"])["value"].mean()
    omega, budget = mean.idxmin()
    pick = frame[(frame.omega == omega) & (frame.budget == budget)]["value"]
    return float(omega), float(budget), pick


def crossing(sizes: list[int], gap: list[float]) -> float | None:
    """First |D_p| where gap = E[SIMS-P] - E[ST-I] turns >= 0, linearly interpolated; None if never."""
    for i, (n, v) in enumerate(zip(sizes, gap)):
        if v >= 0:
            if i == 0:
                return float(n)
            n0, v0 = sizes[i - 1], gap[i - 1]
            return float(n0 + (n - n0) * (-v0) / (v - v0))
    return None


def summarise(table: pd.DataFrame, s: Settings):
    rows = []
    for metric in s.evaluation.metric:
        t = table[table.metric == metric]
        st_i = t[t.scenario == "ST-I"]["value"]
        w_i, b_i, sims_i = best_sims(t[t.scenario == "SIMS-I"])
        for n_p in [0] + sorted(set(s.n_pollute)):
            if n_p == 0:
                st_p, (w_p, b_p, sims_p) = st_i, (w_i, b_i, sims_i)
            else:
                st_p = t[(t.scenario == "ST-P") & (t.n_pollute == n_p)]["value"]
                w_p, b_p, sims_p = best_sims(t[(t.scenario == "SIMS-P") & (t.n_pollute == n_p)])
            row = dict(metric=metric, n_pollute=n_p, pollute_share=n_p / s.loop.n_real)
            for name, values in (("ST-I", st_i), ("SIMS-I", sims_i), ("ST-P", st_p), ("SIMS-P", sims_p)):
                row[name], row[f"{name} se"] = mean_se(values)
            row |= {"SIMS-I w": w_i, "SIMS-I B": b_i, "SIMS-P w": w_p, "SIMS-P B": b_p}
            rows.append(row)
    summary = pd.DataFrame(rows)
    main = summary[summary.metric == s.evaluation.metric[0]]
    sizes = main["n_pollute"].tolist()
    cross = crossing(sizes, (main["SIMS-P"] - main["ST-I"]).tolist())
    last = main.iloc[-1]
    headline = {
        f"{s.evaluation.metric[0]} ST-I": float(last["ST-I"]),
        f"{s.evaluation.metric[0]} SIMS-I (best) / ST-I": float(last["SIMS-I"] / last["ST-I"]),
        f"{s.evaluation.metric[0]} ST-P / ST-I at |D_p|={int(last.n_pollute)}": float(last["ST-P"] / last["ST-I"]),
        f"{s.evaluation.metric[0]} SIMS-P / ST-I at |D_p|={int(last.n_pollute)}": float(last["SIMS-P"] / last["ST-I"]),
        "|D_p| where SIMS-P stops beating ST-I": (
            f"> {max(sizes)} (beats ST-I on the whole grid)" if cross is None
            else "0: SIMS-I itself does not beat ST-I" if cross == 0
            else f"{cross:.0f} ({cross / s.loop.n_real:.0%} of |D_r|)"),
    }
    return summary, headline


def figure(summary: pd.DataFrame, s: Settings, headline: dict):
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(summary["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 4.6), squeeze=False)
    styles = {"ST-I": ("C0", "--", "G¹ ST-I"), "SIMS-I": ("C2", "--", "G¹ SIMS-I (best w, B)"),
              "ST-P": ("C3", "-o", "G² ST-P"), "SIMS-P": ("C1", "-s", "G² SIMS-P (best w, B)")}
    for ax, metric in zip(axes[0], metrics):
        m = summary[summary.metric == metric]
        for name, (col, style, label) in styles.items():
            ax.errorbar(m["n_pollute"], m[name], yerr=m[f"{name} se"], fmt=style, color=col,
                        label=label, capsize=3, ms=4)
        ax.set(xlabel="|D_p| (synthetic points polluting D_r)", ylabel=f"E[{metric}(G, p_r)]",
               title=f"{metric}  (|D_r| = {s.loop.n_real})")
        ax.legend(fontsize=8)
    fig.suptitle("Pollution (paper Fig. 6) on the toy DDPM: " + "; ".join(
        f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in list(headline.items())[-1:]),
        fontsize=10)
    fig.tight_layout()
    return fig
