"""Aggregation over seeds of one run's results table (one row per run, seed, generation, metric):
the summary `madlab run` prints.

Per metric, over the seeds that have both generations (a seed whose value is NaN there, e.g. an
inlier distance with fewer than two inliers, is left out and the seed count says so):

    first, last        E[dist(G^1)] and E[dist(G^T)], means over seeds (first_se, last_se: one
                       standard error)
    ratio              E[dist(G^T)] / E[dist(G^1)] (ratio_lo, ratio_hi: percentile bootstrap over
                       seeds, analysis.mad.bootstrap)
    median_first, median_last, median_ratio (median_lo, median_hi)
                       the same with the median over seeds, which a few seeds decided by far
                       samples do not move (DESIGN.md section 2)

Beside w2 (and w2_inlier) the table has w2sq (w2sq_inlier): the same seeds' W2 squared
(analysis.mad.with_squares), so E[W2^2] ratios sit beside E[W2] ratios.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import mad
from analysis.paper import BOOT_SEED, LEVEL, N_BOOT


def _se(values: np.ndarray) -> float:
    return values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")


def _ratio(last: float, first: float) -> float:
    return last / first if first != 0 else float("nan")


def run_summary(frame: pd.DataFrame, level: float = LEVEL, n_boot: int = N_BOOT,
                seed: int = BOOT_SEED) -> pd.DataFrame:
    """One row per metric (module docstring): metric, seeds, first, first_se, last_generation,
    last, last_se, ratio, ratio_lo, ratio_hi, median_first, median_last, median_ratio, median_lo,
    median_hi."""
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = []
    frame = mad.with_squares(frame)
    for metric, part in frame.groupby("metric", sort=False):
        first_gen, last_gen = part["generation"].min(), part["generation"].max()
        wide = (part[part["generation"].isin([first_gen, last_gen])]
                .drop_duplicates(["seed", "generation"])
                .pivot(index="seed", columns="generation", values="value")
                .reindex(columns=[first_gen, last_gen]).dropna())
        values = wide.to_numpy(dtype=float)                       # [S, 2]: G^1, G^T
        row = {"metric": metric, "seeds": len(values), "last_generation": int(last_gen)}
        for stat in mad.STATISTICS:
            pre = mad.PREFIX[stat]
            if len(values) == 0:
                row |= {f"{pre}first": np.nan, f"{pre}last": np.nan, f"{pre}ratio": np.nan,
                        f"{stat}_lo": np.nan, f"{stat}_hi": np.nan}
                continue
            c = mad.center(values, stat)
            boot = mad.bootstrap(values, stat, n_boot, seed)
            with np.errstate(divide="ignore", invalid="ignore"):
                lo, hi = np.percentile(boot[:, 1] / boot[:, 0], q)
            row |= {f"{pre}first": c[0], f"{pre}last": c[1], f"{pre}ratio": _ratio(c[1], c[0]),
                    f"{stat}_lo": lo, f"{stat}_hi": hi}
        row |= {"first_se": _se(values[:, 0]) if len(values) else np.nan,
                "last_se": _se(values[:, 1]) if len(values) else np.nan}
        rows.append(row)
    out = pd.DataFrame(rows).rename(columns={"mean_lo": "ratio_lo", "mean_hi": "ratio_hi"})
    return out[["metric", "seeds", "first", "first_se", "last_generation", "last", "last_se", "ratio",
                "ratio_lo", "ratio_hi", "median_first", "median_last", "median_ratio", "median_lo",
                "median_hi"]]
