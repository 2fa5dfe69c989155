"""Convergence ratios from the calibration CSVs: E[dist(G^inf)] / E[dist(G^1)] per configuration.

E[dist(G^t)] is the mean over seeds at generation t; E[dist(G^inf)] the mean of those over
generations 20..T (the paper's definition). Reported for fd (n_eval samples), w2 (exact OT,
1000 vs 1000) and, for reference, w2^2 (the squared cost that POT's emd2 returns). The
standard error of each ratio is a seed bootstrap (the same resampled seeds for G^1 and G^inf).

Usage: python docs/calibration/ratios.py docs/calibration/*.csv [--from 20] [--markdown]
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

PAPER_STANDARD = {125: 1.71, 250: 2.46, 500: 3.99, 1000: 6.69}
PAPER_SIMS_BEST = {125: 0.996, 250: 1.013, 500: 1.078, 1000: 1.204}


def ratio(table: pd.DataFrame, column: str, start: int) -> float:
    """table: one configuration, rows per (seed, generation)."""
    per_gen = table.pivot_table(index="generation", values=column, aggfunc="mean")[column]
    return float(per_gen[per_gen.index >= start].mean() / per_gen.loc[1])


def bootstrap_se(table: pd.DataFrame, column: str, start: int, draws: int = 200) -> float:
    wide = table.pivot_table(index="seed", columns="generation", values=column)
    wide = wide[[g for g in wide.columns if g == 1 or g >= start]].to_numpy()
    rng = np.random.default_rng(0)
    out = []
    for _ in range(draws):
        m = np.nanmean(wide[rng.integers(0, len(wide), len(wide))], axis=0)
        out.append(np.nanmean(m[1:]) / m[0])
    return float(np.std(out))


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def summarize(frame: pd.DataFrame, start: int = 20, g1: pd.DataFrame | None = None) -> pd.DataFrame:
    """g1: optional gen-1 rows of a larger seed set of the same training settings (G^1 = A(D_r)
    does not depend on |D_s|, and for standard training not on omega), used as a second,
    less noisy denominator: column fd_ratio_g1 / w2_ratio_g1."""
    frame = frame.assign(w2sq=frame["w2"] ** 2)
    rows = []
    keys = ["candidate", "algo", "omega", "n_synth"]
    for key, group in frame.groupby(keys):
        gens = int(group["generation"].max())
        if gens < start:
            continue
        row = dict(zip(keys, key), seeds=group["seed"].nunique(), T=gens,
                   n_eval=int(group.loc[group["generation"] == 1, "n_eval"].iloc[0]))
        first = group[group["generation"] == 1]
        row["fd_G1"] = first["fd"].mean()
        row["w2_G1"] = first["w2"].mean()
        for col in ("fd", "w2", "w2sq"):
            row[f"{col}_ratio"] = ratio(group, col, start)
            row[f"{col}_se"] = bootstrap_se(group, col, start)
        if g1 is not None and row["algo"] == "standard":
            tail = group[group["generation"] >= start]
            for col in ("fd", "w2"):
                row[f"{col}_ratio_g1"] = tail.groupby("generation")[col].mean().mean() / g1[col].mean()
        if row["algo"] == "standard" or row["omega"] == 0:
            row["paper"] = PAPER_STANDARD.get(row["n_synth"])
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+")
    p.add_argument("--from", dest="start", type=int, default=20)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--g1", default=None, help="CSV of a gen-1-only run with more seeds (denominator)")
    a = p.parse_args()
    frame = pd.concat([pd.read_csv(f) for f in a.csv], ignore_index=True)
    g1 = None
    if a.g1:
        g1 = pd.read_csv(a.g1)
        g1 = g1[g1["generation"] == 1]
    table = summarize(frame, a.start, g1).round(3)
    print(markdown(table) if a.markdown else table.to_string(index=False))


if __name__ == "__main__":
    main()
