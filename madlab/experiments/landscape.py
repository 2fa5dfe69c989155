"""Paper Figure 3: dist(G_theta, p_r) over theta = (1 + w_a + w_s) theta_r - w_a theta_a - w_s theta_s.

theta_r  base toy DDPM trained on |D_r| real points of N(0, [[2, 1], [1, 2]]);
theta_s  auxiliary: theta_r fine-tuned on |S| of its own samples (SIMS, paper section 3);
theta_a  advanced: theta_r fine-tuned on |D_a| fresh real points.
w_a = 0 is the self-improvement path (Eq. 6 with w = w_s), w_s = 0 the base-to-advanced path
(w_a = -1 is theta_a itself). Fine-tuning uses a small learning rate so that theta_s and theta_a
stay in theta_r's basin, as the paper requires for parameter-space guidance.
"""
from __future__ import annotations

import pandas as pd
import torch

from loops import SeedStreams
from madlab.experiments.common import Progress, Result, ddpm_backend, distances, mean_se, no_progress
from madlab.experiments.toy_settings import Landscape as Settings
from toy.targets import paper_gaussian


def theta(backend, theta_r, theta_a, theta_s, omega_a: float, omega_s: float):
    """(1 + w_a + w_s) theta_r - w_a theta_a - w_s theta_s (paper section 3)."""
    return backend.combine([theta_r, theta_a, theta_s], [1.0 + omega_a + omega_s, -omega_a, -omega_s])


def train_models(s: Settings, streams: SeedStreams, progress: Progress = no_progress, total: int = 0):
    """(backend, theta_r, theta_a, theta_s) for every seed."""
    target = paper_gaussian()
    ddpm = s.toy_ddpm           # the toy DDPM's options (learner, batch size, lr)
    backend = ddpm_backend(s.device, learner=ddpm.learner, batch_size=ddpm.batch_size, lr=ddpm.lr)
    fine = ddpm_backend(s.device, learner=ddpm.learner, batch_size=ddpm.batch_size, lr=s.finetune_lr)
    g = streams.keys
    real = target.sample(s.loop.n_real, g("real", 1))
    progress(0, total, f"base model: {s.loop.epochs:g} epochs on |D_r| = {s.loop.n_real}")
    theta_r = backend.train(backend.init(g("init", 1)), real, s.loop.epochs, g("train", 1))
    progress(1, total, f"auxiliary model: {s.finetune_epochs:g} epochs on |S| = {s.algo.n_aux} self-samples")
    synthetic = backend.sample(theta_r, s.algo.n_aux, g("aux-sample", 1))
    theta_s = fine.train(theta_r, synthetic, s.finetune_epochs, g("finetune", 1))
    progress(2, total, f"advanced model: {s.finetune_epochs:g} epochs on |D_a| = {s.n_advanced} real points")
    fresh = target.sample(s.n_advanced, g("real", 2))
    theta_a = fine.train(theta_r, fresh, s.finetune_epochs, g("finetune", 2))
    return backend, theta_r, theta_a, theta_s


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    """The long table of the seeds first_seed .. first_seed + seeds - 1: one row per (grid point,
    metric, seed), seed innermost (chunks of seeds concatenate into it: madlab.experiments.chunks)."""
    s = settings.validate()
    streams = SeedStreams(range(s.first_seed, s.first_seed + s.seeds))
    target = paper_gaussian()
    grid = [(wa, ws) for wa in s.omega_a for ws in s.omega_s]
    total = 3 + len(grid)
    backend, theta_r, theta_a, theta_s = train_models(s, streams, progress, total)
    needs_real = any(m in ("w1", "w2") for m in s.evaluation.metric)
    real = target.sample(s.evaluation.n_eval, streams.keys("eval-real", 1)) if needs_real else None
    rows = []
    for i, (wa, ws) in enumerate(grid):
        progress(3 + i, total, f"grid point w_a={wa:g}, w_s={ws:g}")
        # the same sampler noise at every grid point: differences come from theta alone
        x = backend.sample(theta(backend, theta_r, theta_a, theta_s, wa, ws), s.evaluation.n_eval,
                           streams.keys("eval", 1))
        finite = torch.isfinite(x).all(-1).all(-1)
        x = torch.nan_to_num(x, nan=1e6, posinf=1e6, neginf=-1e6).clamp(-1e6, 1e6)
        for metric, values in distances(s.evaluation.metric, x, real, target).items():
            for k, v in enumerate(values.tolist()):
                rows.append(dict(omega_a=wa, omega_s=ws, seed=streams.seeds[k], metric=metric,
                                 value=v if bool(finite[k]) else float("inf")))
    progress(total, total, "done")
    return pd.DataFrame(rows)


def result(table: pd.DataFrame, s: Settings) -> Result:
    """Summary, headline, notes and figure of the whole table (all seeds)."""
    summary, headline = summarise(table, s)
    notes = [f"{s.seeds} seeds; mean over seeds, ± one standard error; the same sampler noise at "
             "every grid point.",
             "w2: exact OT between n_eval model and n_eval real samples (floor ≈ 0.19 at 1000 vs 1000); "
             "fd: Fréchet distance to the true (μ, Σ)."]
    return Result(table, summary, headline, lambda: figure(table, s, headline), notes)


def summarise(table: pd.DataFrame, s: Settings):
    """The landmarks: base, advanced, best on each path, best anywhere (per metric, seed means)."""
    rows, headline = [], {}
    for metric, frame in table.groupby("metric", sort=False):
        mean = frame.groupby(["omega_a", "omega_s"])["value"].mean()

        def point(label, wa, ws):
            m, se = mean_se(frame[(frame.omega_a == wa) & (frame.omega_s == ws)]["value"])
            rows.append(dict(metric=metric, point=label, omega_a=wa, omega_s=ws, mean=m, se=se))
            return m

        base = point("base θ_r", 0.0, 0.0)
        point("advanced θ_a", -1.0, 0.0)
        self_path = mean.xs(0.0, level="omega_a")
        adv_path = mean.xs(0.0, level="omega_s")
        best_s = point("best on the self-improvement path (w_a = 0)", 0.0, float(self_path.idxmin()))
        best_a = point("best on the base-to-advanced path (w_s = 0)", float(adv_path.idxmin()), 0.0)
        wa, ws = mean.idxmin()
        best = point("best anywhere on the grid", float(wa), float(ws))
        if metric == s.evaluation.metric[0]:
            headline |= {f"{metric} base": base, f"{metric} best w_s on self path": float(self_path.idxmin()),
                         f"{metric} self path best / base": best_s / base,
                         f"{metric} advanced path best / base": best_a / base,
                         f"{metric} best (w_a, w_s)": f"({float(wa):g}, {float(ws):g})",
                         f"{metric} best anywhere / base": best / base}
    return pd.DataFrame(rows), headline


def figure(table: pd.DataFrame, s: Settings, headline: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    metrics = list(dict.fromkeys(table["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.2 * len(metrics), 5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        mean = (table[table.metric == metric].groupby(["omega_a", "omega_s"])["value"].mean()
                .unstack("omega_s").sort_index().sort_index(axis=1))
        z = mean.to_numpy()
        shown = np.where(np.isfinite(z), z, np.nan)
        cap = np.nanpercentile(shown, 90) if np.isfinite(shown).any() else 1.0
        im = ax.pcolormesh(mean.columns, mean.index, np.minimum(shown, cap), shading="nearest",
                           cmap="viridis")
        fig.colorbar(im, ax=ax, label=f"E[{metric}(G_θ, p_r)] (capped at the 90th percentile)")
        ax.axhline(0, color="w", ls="--", lw=1.2)
        ax.axvline(0, color="w", ls="--", lw=1.2)
        ax.plot([0], [0], "o", color="w", mec="k", label="base θ_r")
        ax.plot([0], [-1], "s", color="w", mec="k", label="advanced θ_a")
        ia, is_ = np.unravel_index(np.nanargmin(shown), shown.shape)
        ax.plot([mean.columns[is_]], [mean.index[ia]], "*", color="r", ms=14, label="minimum")
        ax.set(xlabel="ω_s (auxiliary, self-improvement path at ω_a = 0)",
               ylabel="ω_a (advanced, base-to-advanced path at ω_s = 0)", title=f"{metric}")
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle("θ = (1+ω_a+ω_s) θ_r − ω_a θ_a − ω_s θ_s  (toy DDPM, 2-D Gaussian; "
                 f"|D_r|={s.loop.n_real}, |S|={s.algo.n_aux}, |D_a|={s.n_advanced}, {s.seeds} seeds)", fontsize=10)
    fig.tight_layout()
    return fig
