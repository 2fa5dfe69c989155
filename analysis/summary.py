"""Aggregation over seeds of a results table (one row per run, seed, generation, metric)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def run_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per metric: E[dist(G^1)], E[dist(G^T)] at the last generation, their ratio, standard
    errors over seeds, and the number of seeds."""
    rows = []
    for metric, part in frame.groupby("metric", sort=False):
        first_gen, last_gen = part["generation"].min(), part["generation"].max()
        first = part.loc[part["generation"] == first_gen, "value"]
        last = part.loc[part["generation"] == last_gen, "value"]
        rows.append({"metric": metric, "seeds": part["seed"].nunique(),
                     "first": first.mean(), "first_se": first.std(ddof=1) / np.sqrt(len(first)) if len(first) > 1 else float("nan"),
                     "last_generation": int(last_gen), "last": last.mean(),
                     "last_se": last.std(ddof=1) / np.sqrt(len(last)) if len(last) > 1 else float("nan"),
                     "ratio": last.mean() / first.mean() if first.mean() != 0 else float("nan")})
    return pd.DataFrame(rows)
