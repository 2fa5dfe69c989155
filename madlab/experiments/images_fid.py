"""How far to trust an image FID here: its floor, its bias against sample size, two feature sets.

floor (halves)   FID between two disjoint random halves of the real data set, n images each:
                 what two samples of p_r itself score; no model can be expected below it.
floor (vs set)   FID of n real images against the whole data set's statistics: the floor of the
                 numbers the image experiments report (they compare n_eval samples with the whole set).
Both shrink roughly like 1/n (FID's bias), so a table's FIDs compare only at one n. 'fid' uses the
configured features (the digits classifier, or Inception), 'fid_pixels' raw pixels. No training:
seconds on digits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from madlab.experiments.common import Progress, Result, no_progress
from madlab.experiments.images import Bench
from madlab.experiments.image_settings import ImageExperiment, ImagesFid as Settings

MAX_IMAGES = 20_000   # features of at most this many images (a CIFAR-10-sized set: the first 20k)


def floor_table(bench: Bench, sizes: list[int], repeats: int, seed: int = 0) -> pd.DataFrame:
    """One row per (metric, n, kind): the mean and sd of the real-vs-real FID over `repeats` splits."""
    from analysis.fid import feature_stats, frechet_distance
    from madlab.edm.data import to_unit

    images = bench.images.images[:MAX_IMAGES]
    M = len(images)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(M) for _ in range(repeats)]
    rows = []
    for metric, extractor in bench.extractors.items():
        feats = np.concatenate([extractor(to_unit(images[s:s + 1000])) for s in range(0, M, 1000)])
        ref = feature_stats(feats)
        for n in sorted(set(sizes)):
            for kind in ("halves", "vs set"):
                if (kind == "halves" and 2 * n > M) or n > M:
                    continue
                values = []
                for p in perms:
                    a = feature_stats(feats[p[:n]])
                    b = feature_stats(feats[p[n:2 * n]]) if kind == "halves" else ref
                    values.append(frechet_distance(*a, *b))
                rows.append(dict(metric=metric, n=n, kind=kind, mean=float(np.mean(values)),
                                 sd=float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                                 splits=len(values)))
    return pd.DataFrame(rows)


def trust_table(s: ImageExperiment, bench: Bench | None = None) -> pd.DataFrame:
    """The floor beside an experiment's FID table: both kinds at the experiment's n_eval, 5 splits."""
    bench = bench or Bench(s, "fid")
    n = min(s.evaluation.n_eval, len(bench.images.images[:MAX_IMAGES]) // 2)
    return floor_table(bench, [n], repeats=5)


def run(settings: Settings, progress: Progress = no_progress) -> Result:
    s = settings.validate()
    progress(0, 1, f"features of {s.edm_config().dataset}")
    bench = Bench(s, "fid")
    table = floor_table(bench, s.sizes, s.repeats)
    progress(1, 1, "done")
    main = table[(table.metric == s.evaluation.metric[0])]
    at = main[(main.kind == "vs set")].set_index("n")["mean"]
    n_eval = min(s.sizes, key=lambda n: abs(n - s.evaluation.n_eval))
    headline = {f"{s.evaluation.metric[0]} floor vs set at n={n_eval}": float(at.get(n_eval, float("nan")))}
    if len(at) > 1:
        lo, hi = at.index.min(), at.index.max()
        headline[f"{s.evaluation.metric[0]} floor ratio n={lo} / n={hi}"] = float(at[lo] / at[hi])
        headline[f"the same ratio if the bias were ~1/n"] = float(hi / lo)
    notes = [f"{s.repeats} random splits per n (seeded); mean and sd over splits. 'halves': two disjoint "
             "sets of n real images; 'vs set': n real images against the whole set's statistics (the "
             "experiments' comparison).",
             "FID differences between models smaller than a few sd of the floor at the same n are noise."]
    return Result(table, table, headline, lambda: figure(table), notes)


def figure(table: pd.DataFrame):
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(table.metric))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for kind, style in (("halves", "-o"), ("vs set", "-s")):
            t = table[(table.metric == metric) & (table.kind == kind)]
            ax.errorbar(t.n, t["mean"], yerr=t.sd, fmt=style, capsize=3, label=kind)
        ax.set(xscale="log", yscale="log", xlabel="n (real images per side)", ylabel="FID of real vs real",
               title=f"{metric}: FID floor and its bias")
        ax.legend()
    fig.tight_layout()
    return fig

