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
from dataclasses import dataclass, field

import pandas as pd

from madlab.config import ConfigError
from madlab.experiments.common import Progress, Result, no_progress, require
from madlab.experiments.images import (Bench, ImageSettings, band, cifar_edm, estimate, fid_notes, per_seed,
                                       ratio_band, trained)


@dataclass
class Settings(ImageSettings):
    gens: int = 10                    # T, generations of every loop
    n_synth: int = 150                # |D_s|: synthetic images each generation hands on
    n_aux: int = 300                  # SIMS n_s: base samples the auxiliary model is fine-tuned on
    aux_epochs: float = 5.0           # SIMS budget B: epochs over S (or kimg)
    omegas: list[float] = field(default_factory=lambda: [1.0, 3.0])  # SIMS arms (standard = w 0 is always run)
    fully_synthetic: bool = True      # also run the fully synthetic loop (standard training): the MAD reference
    n_real: int = 300                 # |D_r|
    epochs: float = 30                # epochs over D^t per generation, from scratch
    n_eval: int = 300
    metrics: list[str] = field(default_factory=lambda: ["fid"])  # the loop records FID on the configured features

    def validate(self) -> "Settings":
        self.validate_images()
        require(self.metrics == ["fid"], "the loop records fid (the configured features) only: metrics=fid")
        require(self.gens >= 2, f"gens must be at least 2, got {self.gens}")
        require(self.n_synth >= 1 and self.n_aux >= 1 and self.aux_epochs > 0,
                "n_synth, n_aux and aux_epochs must be positive")
        require(all(w != 0 for w in self.omegas), "omegas are the SIMS arms: w = 0 (standard) always runs")
        for arm, cfg in self.arms().items():
            try:
                cfg.validate()
            except ValueError as err:
                raise ConfigError(f"{arm}: {err}") from None
        return self

    def arms(self) -> dict:
        """{arm name: RunConfig of one seed} in the order they are run and plotted."""
        out = {"standard": self.run_config("augment", "standard", 0.0)}
        out |= {f"SIMS w={w:g}": self.run_config("augment", "sims", w) for w in self.omegas}
        if self.fully_synthetic:
            out["fully synthetic"] = self.run_config("fully-synthetic", "standard", 0.0)
        return out

    def run_config(self, kind: str, algo: str, omega: float, seed: int = 0):
        from madlab.config import RunConfig

        cfg = RunConfig.from_flat(backend="edm", loop=kind, algo=algo, omega=omega, gens=self.gens,
                                  n_real=self.n_real, n_synth=self.n_synth, epochs=self.epochs,
                                  n_aux=self.n_aux, aux_epochs=self.aux_epochs, n_eval=self.n_eval,
                                  metric=["fid"], seeds=1, first_seed=seed, device=self.device)
        cfg.edm = dataclasses.replace(self.edm, checkpoint_dir="")
        return cfg


SCALES = {
    "smoke": Settings(seeds=3, gens=3, n_real=100, n_synth=50, epochs=3, n_aux=50, aux_epochs=1.0,
                      n_eval=100, omegas=[1.0]),
    "quick": Settings(),
    "paper": Settings(edm=cifar_edm(), gens=10, n_real=50_000, n_synth=12_500, epochs=100_000,
                      n_aux=50_000, aux_epochs=20_000.0, n_eval=10_000, device="cuda"),
}


def slug(arm: str) -> str:
    return arm.replace(" ", "-").replace("=", "")


def measure_seed(s: Settings, bench: Bench, seed: int, step) -> list[dict]:
    from madlab.runner import run_config
    from madlab.store import TaskCheckpoint

    rows = []
    for arm, cfg in s.arms().items():
        step(f"{arm}: {s.gens} generations")
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
    for cfg in s.arms().values():
        sims, kind = cfg.algo.name == "sims", cfg.loop.kind
        for t in range(1, s.gens + 1):
            size = s.n_real if t == 1 else (s.n_synth if kind == "fully-synthetic" else s.n_real + s.n_synth)
            train += trained(s, s.epochs, size) + (trained(s, s.aux_epochs, s.n_aux) if sims else 0)
            handed = s.n_synth if t < s.gens else 0
            sample += (s.n_aux if sims else 0) + (2 if sims else 1) * (handed + s.n_eval)
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
    start = s.gens // 2 + 1
    summary_rows = []
    for arm, part in c.groupby("arm", sort=False):
        wide = table[table.arm == arm].pivot(index="seed", columns="generation", values="value")
        late = wide[[t for t in wide.columns if t >= start]].mean(axis=1).to_numpy()
        r, lo, hi = ratio_band(late, wide[1].to_numpy())
        last = part[part.generation == part.generation.max()].iloc[0]
        summary_rows.append({"arm": arm, "FID G^1": part.iloc[0]["fid"], "FID G^T": last["fid"],
                             "ratio G^T": last["ratio"], "ratio G^T lo": last["ratio_lo"],
                             "ratio G^T hi": last["ratio_hi"], f"ratio t={start}..{s.gens}": r,
                             "lo": lo, "hi": hi})
    summary = pd.DataFrame(summary_rows)
    headline = {f"{row['arm']}: mean ratio t={start}..{s.gens} [95% band]": f"{row[f'ratio t={start}..{s.gens}']:.3f} "
                f"[{row['lo']:.3f}, {row['hi']:.3f}]" for row in summary_rows}
    notes = fid_notes(s) + [
        f"augment loop: |D_r| = {s.n_real}, |D_s| = {s.n_synth}, {s.epochs:g} {s.edm.budget} per generation "
        f"from scratch; SIMS: n_s = {s.n_aux}, B = {s.aux_epochs:g}; fully synthetic: |D^t| = |D_s| = {s.n_synth}.",
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
        ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Image self-consuming loop on {s.edm_config().dataset}: |D_r| = {s.n_real}, |D_s| = {s.n_synth}, "
                 f"{s.seeds} seeds, bands = 95 % bootstrap over seeds", fontsize=10)
    fig.tight_layout()
    return fig
