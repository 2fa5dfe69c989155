"""An image self-consuming loop (paper Figure 5's bottom panels, on real images): the synthetic
augmentation loop D^t = D_r ∪ D_s^{t-1} with the EDM backend, standard training against SIMS at a
few w, and the fully synthetic loop D^t = D_s^{t-1} (standard training) as the MAD reference.

Each arm is one `RunConfig` (loops.Loop through madlab.runner.run_config, the same code as
`madlab run --backend edm`), one seed at a time, checkpointed every generation in the work folder
with madlab's TaskCheckpoint: an interrupted run resumes at the last finished generation. FID per
generation on the configured features (the digits classifier, or Inception); the ratio curves are
E[FID(G^t)] / E[FID(G^1)] with a 95 % bootstrap band over seeds.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.images import Bench, band, estimate, fid_notes, per_seed, ratio_band, trained
from madlab.experiments.image_settings import ImagesLoop as Settings


def slug(arm: str) -> str:
    return arm.replace(" ", "-").replace("=", "")


def measure_seed(s: Settings, bench: Bench, seed: int, step) -> list[dict]:
    from madlab.runner import run_config
    from madlab.store import TaskCheckpoint

    rows = []
    for arm, cfg in s.arms().items():
        step(f"{arm}: {s.loop.gens} generations")
        cfg = dataclasses.replace(cfg, first_seed=seed)

        def one() -> list[dict]:
            checkpoint = TaskCheckpoint(bench.work, f"{slug(arm)}-seed{seed}") if bench.work else None
            frame = run_config(cfg, checkpoint=checkpoint)
            return [dict(arm=arm, generation=int(r.generation), metric=r.metric, seed=seed, value=float(r.value))
                    for r in frame.itertuples()]

        rows += bench.rows(f"{slug(arm)}-seed{seed}", one)
    return rows


def workload(s: Settings) -> dict:
    """What the default measures, counted (madlab experiment --dry-run): every arm's generations."""
    train = sample = 0
    loop, algo = s.loop, s.algo
    for cfg in s.arms().values():
        sims, kind = cfg.algo.name == "sims", cfg.loop.kind
        for t in range(1, loop.gens + 1):
            later = loop.n_synth if kind == "fully-synthetic" else loop.n_real + loop.n_synth   # |D^t|, t > 1
            size = loop.n_real if t == 1 else later
            train += trained(s, loop.epochs, size) + (trained(s, algo.aux_epochs, algo.n_aux) if sims else 0)
            handed = loop.n_synth if t < loop.gens else 0
            sample += (algo.n_aux if sims else 0) + (2 if sims else 1) * (handed + s.evaluation.n_eval)
    return estimate(s, train, sample)


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    return result(measure(settings, progress), settings)


def measure(settings: Settings, progress: Progress = no_progress) -> pd.DataFrame:
    s = settings.validate()
    bench = Bench(s, "images-loop")
    return per_seed(s, bench, len(s.arms()), progress, lambda seed, st, step: measure_seed(s, bench, seed, step))


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm and generation: E[FID(G^t)] and E[FID(G^t)]/E[FID(G^1)] with 95 % bootstrap bands."""
    out = []
    for arm, part in table.groupby("arm", sort=False):
        wide = part.pivot(index="seed", columns="generation", values="value")
        for t in wide.columns:
            m, lo, hi = band(wide[t].to_numpy())
            r, rlo, rhi = ratio_band(wide[t].to_numpy(), wide[1].to_numpy())
            out.append(dict(arm=arm, generation=int(t), fid=m, fid_lo=lo, fid_hi=hi, ratio=r,
                            ratio_lo=rlo, ratio_hi=rhi, seeds=len(wide)))
    return pd.DataFrame(out)


def result(table: pd.DataFrame, s: Settings) -> Result:
    from madlab.experiments.images_fid import trust_table

    c = curves(table)
    T, start = s.loop.gens, s.loop.gens // 2 + 1
    summary_rows = []
    for arm, part in c.groupby("arm", sort=False):
        wide = table[table.arm == arm].pivot(index="seed", columns="generation", values="value")
        late = wide[[t for t in wide.columns if t >= start]].mean(axis=1).to_numpy()
        r, lo, hi = ratio_band(late, wide[1].to_numpy())
        last = part[part.generation == part.generation.max()].iloc[0]
        summary_rows.append({"arm": arm, "FID G^1": part.iloc[0]["fid"], "FID G^T": last["fid"],
                             "ratio G^T": last["ratio"], "ratio G^T lo": last["ratio_lo"],
                             "ratio G^T hi": last["ratio_hi"], f"ratio t={start}..{T}": r,
                             "lo": lo, "hi": hi})
    summary = pd.DataFrame(summary_rows)
    headline = {f"{row['arm']}: mean ratio t={start}..{T} [95% band]": f"{row[f'ratio t={start}..{T}']:.3f} "
                f"[{row['lo']:.3f}, {row['hi']:.3f}]" for row in summary_rows}
    notes = fid_notes(s) + [
        f"augment loop: |D_r| = {s.loop.n_real}, |D_s| = {s.loop.n_synth}, {s.loop.epochs:g} {s.edm.budget} per "
        f"generation from scratch; SIMS: n_s = {s.algo.n_aux}, B = {s.algo.aux_epochs:g}; fully synthetic: "
        f"|D^t| = |D_s| = {s.loop.n_synth}.",
        "ratio = E[FID(G^t)] / E[FID(G^1)] (means over seeds), band: seeds resampled jointly."]
    return Result(table, summary, headline, lambda: figure(c, s), notes,
                  tables={"curves": c, "fid-floor": trust_table(s)})


def figure(c: pd.DataFrame, s: Settings):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    # the paper's colours: standard green, SIMS orange then purple; the MAD reference black
    sims_colours = iter(["C1", "C4", "C3", "C5", "C6"])
    for arm, part in c.groupby("arm", sort=False):
        col = {"standard": "C2", "fully synthetic": "k"}.get(arm) or next(sims_colours)
        ls = ":" if arm == "fully synthetic" else "-"
        for ax, y in zip(axes, ("fid", "ratio")):
            ax.plot(part.generation, part[y], ls, marker="o", ms=3, color=col, label=arm)
            ax.fill_between(part.generation, part[f"{y}_lo"], part[f"{y}_hi"], color=col, alpha=0.15)
    axes[0].set(xlabel="generation t", ylabel="E[FID(G^t)]", title="FID per generation")
    axes[1].axhline(1, color="grey", lw=0.6)
    axes[1].set(xlabel="generation t", ylabel="E[FID(G^t)] / E[FID(G^1)]", title="FID ratio (paper Fig. 5, bottom)")
    for ax in axes:
        # log scale: the fully synthetic loop grows by an order of magnitude or more, and the
        # augment arms' ratios (near 1) must stay readable beside it
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Image self-consuming loop on {s.edm_config().dataset}: |D_r| = {s.loop.n_real}, "
                 f"|D_s| = {s.loop.n_synth}, {s.seeds} seeds, bands = 95 % bootstrap over seeds", fontsize=10)
    fig.tight_layout()
    return fig
