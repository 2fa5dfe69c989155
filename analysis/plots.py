"""Matplotlib figures of MAD curves in the SIMS paper's Figure 5 layout (Agg canvas, no display or pyplot state needed)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.mad import TOLERANCE, as_statistic

METRIC_NAMES = {"w2": "W2 (exact OT)", "w1": "W1 (exact OT)", "fd": "Fréchet distance"}
RATIO_SIZES = (125, 250)   # the |D_s| of Figure 5's bottom row
MAX_CURVES = 6             # most omegas drawn in one ratio-curve panel
QUALITATIVE = ["tab:orange", "tab:purple", "tab:blue", "tab:red", "tab:brown", "tab:pink", "tab:olive",
               "tab:cyan", "tab:gray"]  # omega > 0, in increasing order (green is omega = 0)
DIST_1 = r"$E[\mathrm{dist}(G^1, p_r)]$"
DIST_T = r"$E[\mathrm{dist}(G^t, p_r)]$"
RATIO_T = r"$E[\mathrm{dist}(G^t)]\,/\,E[\mathrm{dist}(G^1)]$"
RATIO_INF = r"$E[\mathrm{dist}(G^\infty)]\,/\,E[\mathrm{dist}(G^1)]$"


def metric_label(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def omega_colors(omegas) -> dict:
    """One colour per omega, the same in every panel: green for omega = 0 (standard training, as in
    the paper), then distinct colours (a plasma ramp beyond nine) for increasing omega."""
    omegas = sorted({float(w) for w in omegas})
    nonzero = [w for w in omegas if w != 0.0]
    if len(nonzero) <= len(QUALITATIVE):
        ramp = QUALITATIVE
    else:
        ramp = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, len(nonzero)))
    colors = {w: ramp[i] for i, w in enumerate(nonzero)}
    if 0.0 in omegas:
        colors[0.0] = "tab:green"
    return colors


def size_colors(sizes) -> dict:
    cycle = matplotlib.colormaps["tab10"]
    return {s: cycle(i % 10) for i, s in enumerate(sorted(sizes))}


def omega_label(w: float) -> str:
    return "ω = 0 (standard)" if w == 0 else f"ω = {w:g}"


def pick_omegas(omegas, best: float | None = None, most: int = MAX_CURVES) -> list[float]:
    """At most `most` omegas spread over the range, always keeping 0 and the best one."""
    omegas = sorted({float(w) for w in omegas})
    if len(omegas) <= most:
        return omegas
    keep = {omegas[0], omegas[-1]}
    if 0.0 in omegas:
        keep.add(0.0)
    if best is not None:
        keep.add(float(best))
    for i in np.linspace(0, len(omegas) - 1, most).round().astype(int):
        if len(keep) >= most:
            break
        keep.add(omegas[i])
    return sorted(keep)


def ratio_sizes(sizes, wanted=RATIO_SIZES) -> list:
    """Figure 5's |D_s| = 125 and 250 when present, else the (up to) two smallest sizes run."""
    sizes = sorted(set(sizes))
    chosen = [s for s in wanted if s in sizes]
    return chosen or sizes[:2]


def _band(ax, x, lo, hi, color):
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)


def plot_first_generation(ax, conv: pd.DataFrame, metric: str, level: float) -> None:
    """Figure 5 top left: E[dist(G^1, p_r)] against omega, one line per |D_s|, normal band."""
    spread = conv.groupby("omega")["first"].agg(lambda v: v.max() - v.min())
    if (spread <= 1e-12 * conv["first"].abs().max()).all():
        # G^1 = A(D_r) never sees D_s: with the same seeds every |D_s| gives the same numbers
        part = conv.sort_values("omega").drop_duplicates("omega")
        ax.plot(part["omega"], part["first"], "o-", color="black", ms=4,
                label=r"every $|D_s|$ ($G^1$ is trained on $D_r$ only)")
        _band(ax, part["omega"].to_numpy(float), part["first_lo"], part["first_hi"], "black")
    else:
        colors = size_colors(conv["n_synth"].unique())
        for size, part in conv.sort_values("omega").groupby("n_synth"):
            ax.plot(part["omega"], part["first"], "o-", color=colors[size], label=f"$|D_s|$ = {size:g}", ms=4)
            _band(ax, part["omega"].to_numpy(float), part["first_lo"], part["first_hi"], colors[size])
    ax.set_xlabel("guidance ω")
    ax.set_ylabel(f"{DIST_1}  ({metric_label(metric)})")
    ax.set_title(f"Generation 1 (self-improvement), band {level:.0%}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_convergence(ax, conv: pd.DataFrame, best: pd.DataFrame, tolerance: float, level: float,
                     other: pd.DataFrame | None = None, names: tuple[str, str] = ("mean", "median")) -> None:
    """Figure 5 top right: E[dist(G^inf)] / E[dist(G^1)] against omega, one line per |D_s|,
    bootstrap band, the best omega of each |D_s| starred; `other` (the same table by the other
    statistic over seeds, `names` = (this, other)) dashed beside it."""
    colors = size_colors(conv["n_synth"].unique())
    for size, part in conv.sort_values("omega").groupby("n_synth"):
        ax.plot(part["omega"], part["ratio"], "o-", color=colors[size], label=f"$|D_s|$ = {size:g}", ms=4)
        _band(ax, part["omega"].to_numpy(float), part["ratio_lo"], part["ratio_hi"], colors[size])
    if other is not None:
        for size, part in other.sort_values("omega").groupby("n_synth"):
            ax.plot(part["omega"], part["ratio"], "--", color=colors[size], lw=1, alpha=0.8,
                    label=f"{names[1]} over seeds" if size == min(colors) else None)
    for row in best.itertuples():
        ax.plot([row.best_omega], [row.best_ratio], "*", color=colors[row.n_synth], ms=13,
                markeredgecolor="black", zorder=5)
    ax.axhline(1.0, color="black", lw=1, ls="--", label="ratio 1 (no MAD)")
    ax.axhline(1 + tolerance, color="grey", lw=1, ls=":", label=f"1 + tolerance ({1 + tolerance:g})")
    start = int(conv["start"].iloc[0])
    last = int(conv["last_generation"].max())
    ax.set_xlabel("guidance ω")
    ax.set_ylabel(f"{RATIO_INF}  (t = {start}..{last})")
    ax.set_title(f"Convergence ratio by the {names[0]} over seeds (★ best ω), band {level:.0%}",
                 fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_ratio_curves(ax, ratios: pd.DataFrame, conv: pd.DataFrame, size, best_omega: float | None,
                      colors: dict, level: float) -> None:
    """Figure 5 bottom: E[dist(G^t)] / E[dist(G^1)] over generations for several omegas at one |D_s|."""
    part = ratios[ratios["n_synth"] == size]
    status = {float(r.omega): r.status for r in conv[conv["n_synth"] == size].itertuples()}
    for w in pick_omegas(part["omega"].unique(), best_omega):
        curve = part[np.isclose(part["omega"].astype(float), w)].sort_values("generation")
        label = f"{omega_label(w)}: {status.get(w, '')}"
        ax.plot(curve["generation"], curve["ratio"], color=colors[w], label=label, lw=1.5)
        _band(ax, curve["generation"].to_numpy(), curve["lo"], curve["hi"], colors[w])
    ax.axhline(1.0, color="black", lw=1, ls="--")
    ax.axvline(int(conv["start"].iloc[0]), color="grey", lw=1, ls=":")
    ax.set_xlabel("generation t")
    ax.set_ylabel(RATIO_T)
    ax.set_title(f"$|D_s|$ = {size:g}: ratio curves, band {level:.0%} (dotted: window start)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot_outlier_share(ax, outliers: pd.DataFrame, best: pd.DataFrame, own_rate: float,
                       radius: float = 5.0) -> None:
    """Mean outlier share over seeds per generation (share of samples beyond Mahalanobis radius
    `radius` under p_r), per |D_s| at its best omega (solid) and at omega = 0 (dashed), against
    p_r's own share (dotted); symmetric-log axis, linear below p_r's own share."""
    colors = size_colors(outliers["n_synth"].unique())
    for size, part in outliers.groupby("n_synth"):
        row = best[best["n_synth"] == size]
        chosen = [float(row["best_omega"].iloc[0])] if len(row) else []
        for w, style in [(w, "-") for w in chosen] + [(0.0, "--")]:
            curve = part[np.isclose(part["omega"].astype(float), w)].sort_values("generation")
            if len(curve) and not (style == "--" and chosen and chosen[0] == 0.0):
                ax.plot(curve["generation"], curve["mean"], style, color=colors[size], lw=1.5,
                        label=f"$|D_s|$ = {size:g}, {omega_label(w)}")
    ax.axhline(own_rate, color="black", lw=1, ls=":", label=f"p_r's own ({own_rate:.1e})")
    ax.set_yscale("symlog", linthresh=own_rate if own_rate > 0 else 1e-6)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("generation t")
    ax.set_ylabel(f"outlier share (radius > {radius:g})")
    ax.set_title("Outlier share per generation, mean over seeds (solid: best ω, dashed: ω = 0)",
                 fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def figure5(conv: pd.DataFrame, ratios: pd.DataFrame, best: pd.DataFrame, metric: str = "w2",
            tolerance: float = TOLERANCE, level: float = 0.95, title: str = "",
            sizes=RATIO_SIZES, statistic: str = "mean", outliers: pd.DataFrame | None = None,
            own_rate: float | None = None) -> Figure:
    """The SIMS paper's Figure 5 from one family's tables (`analysis.mad`'s convergence_table,
    ratio_curves and best_omega): top left E[dist(G^1)] vs omega, top right convergence ratio vs
    omega per |D_s| (by `statistic` over seeds, the other dashed), bottom ratio curves over
    generations at |D_s| = 125 and 250; with `outliers` (mad.generation_curves of outlier_share)
    a last bottom panel of the outlier share per generation against p_r's `own_rate`."""
    other = "median" if statistic == "mean" else "mean"
    view, ratio_view = as_statistic(conv, statistic), as_statistic(ratios, statistic)
    shown = ratio_sizes(conv["n_synth"].unique(), sizes)
    extra = outliers is not None and len(outliers) > 0
    cols = max(2, len(shown) + extra)
    fig = new_figure((6 * cols, 9))
    axes = fig.subplots(2, cols, squeeze=False)
    plot_first_generation(axes[0, 0], view, metric, level)
    plot_convergence(axes[0, 1], view, best, tolerance, level, other=as_statistic(conv, other),
                     names=(statistic, other))
    for ax in axes[0, 2:]:
        ax.axis("off")
    colors = omega_colors(ratios["omega"].unique())
    for i, size in enumerate(shown):
        row = best[best["n_synth"] == size]
        plot_ratio_curves(axes[1, i], ratio_view, view, size, float(row["best_omega"].iloc[0]) if len(row) else None,
                          colors, level)
    if statistic == "median":   # the panels' labels name the mean E[.]; say what is drawn
        axes[0, 1].set_ylabel(r"$\mathrm{median}(G^\infty)\,/\,\mathrm{median}(G^1)$ over seeds")
        axes[0, 0].set_ylabel(r"median over seeds of dist$(G^1, p_r)$")
        for ax in axes[1, :len(shown)]:
            ax.set_ylabel(r"$\mathrm{median}(G^t)\,/\,\mathrm{median}(G^1)$ over seeds")
    if extra:
        plot_outlier_share(axes[1, len(shown)], outliers, best, own_rate or 0.0)
    for ax in axes[1, len(shown) + extra:]:
        ax.axis("off")
    seeds = int(conv["seeds"].min())
    fig.suptitle((title + "\n" if title else "") + f"{metric_label(metric)}, ≥ {seeds} seeds per configuration, "
                 f"{statistic} over seeds", fontsize=12)
    fig.tight_layout()
    return fig


def generations_figure(curves: pd.DataFrame, metric: str = "w2", level: float = 0.95, title: str = "") -> Figure:
    """E[dist(G^t, p_r)] over generations, one panel per |D_s|, one line per omega, normal band."""
    sizes = sorted(curves["n_synth"].unique())
    cols = min(len(sizes), 2 if len(sizes) <= 4 else 3)
    rows = int(np.ceil(len(sizes) / cols))
    fig = new_figure((6 * cols, 4.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = omega_colors(curves["omega"].unique())
    for ax, size in zip(axes.flat, sizes):
        part = curves[curves["n_synth"] == size]
        for w in pick_omegas(part["omega"].unique()):
            curve = part[np.isclose(part["omega"].astype(float), w)].sort_values("generation")
            ax.plot(curve["generation"], curve["mean"], color=colors[w], label=omega_label(w), lw=1.5)
            _band(ax, curve["generation"].to_numpy(), curve["lo"], curve["hi"], colors[w])
        ax.set_title(f"$|D_s|$ = {size:g}", fontsize=10)
        ax.set_xlabel("generation t")
        ax.set_ylabel(f"{DIST_T}  ({metric_label(metric)})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(sizes):]:
        ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + f"mean over seeds, band mean ± {level:.0%} normal interval",
                 fontsize=12)
    fig.tight_layout()
    return fig


def new_figure(size) -> Figure:
    """A figure on its own Agg canvas: nothing global changes, it is freed when dropped, and a
    notebook with `%matplotlib inline` still shows it."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, stem) -> list[Path]:
    """Write `stem`.png (150 dpi) and `stem`.pdf; return the paths."""
    stem = Path(stem)
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def ellipse(mean, cov, radius: float, points: int = 200) -> np.ndarray:
    """The Mahalanobis circle {x : (x - mean)^T cov^-1 (x - mean) = radius^2} of a 2-D Gaussian:
    mean + radius * L (cos a, sin a), L L^T = cov -> [points, 2]."""
    a = np.linspace(0, 2 * np.pi, points)
    return np.asarray(mean) + radius * np.stack([np.cos(a), np.sin(a)], 1) @ np.linalg.cholesky(cov).T


def samples_figure(x, means, covs, outliers=None, radii=(1, 2, 3, 5), title: str = "",
                   zoom_radius: float = 6.0) -> Figure:
    """One seed-generation's samples x [n, 2] against p_r's Mahalanobis contours (radius 1, 2, 3, 5
    around each mode: means [m, 2], covs [m, 2, 2]); `outliers` (bool [n]) drawn as red crosses.
    Left: every sample (far points set the scale); right: p_r's region (radius `zoom_radius`)."""
    x = np.asarray(x, dtype=float)
    means, covs = np.atleast_2d(means), np.asarray(covs).reshape(-1, 2, 2)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"samples_figure draws 2-D samples, got shape {x.shape}")
    far = np.zeros(len(x), bool) if outliers is None else np.asarray(outliers, bool)
    fig = new_figure((12, 5.6))
    axes = fig.subplots(1, 2)
    box = np.concatenate([ellipse(m, c, zoom_radius) for m, c in zip(means, covs)])
    for ax, zoom in zip(axes, (False, True)):
        for j, (m, c) in enumerate(zip(means, covs)):
            for i, r in enumerate(radii):
                e = ellipse(m, c, r)
                ax.plot(e[:, 0], e[:, 1], color="black", lw=0.8, ls="--" if r == max(radii) else "-",
                        alpha=0.35 + 0.1 * i, label=f"p_r radius {r:g}" if zoom and j == 0 else None)
        ax.scatter(*x[~far].T, s=4, color="tab:blue", alpha=0.5, label=f"inliers ({(~far).sum()})")
        if far.any():
            ax.scatter(*x[far].T, s=28, marker="x", color="tab:red", label=f"beyond radius {max(radii):g} ({far.sum()})")
        if zoom:
            lo, hi = box.min(0), box.max(0)
            ax.set_xlim(lo[0], hi[0])
            ax.set_ylim(lo[1], hi[1])
            ax.set_title(f"p_r's region (Mahalanobis radius ≤ {zoom_radius:g})", fontsize=10)
            ax.legend(fontsize=7, loc="upper left")
        else:
            ax.set_title("every sample", fontsize=10)
        ax.set_aspect("equal", adjustable="datalim" if not zoom else "box")
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
