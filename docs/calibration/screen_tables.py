"""Markdown tables for docs/calibration.md from the learner-screen and SIMS-knob CSVs.

Usage (from the repository root):
  python docs/calibration/screen_tables.py learners CSV ...    # one row per candidate
  python docs/calibration/screen_tables.py knobs CSV           # one row per (carry, B, interval)
"""
from __future__ import annotations

import sys

import pandas as pd


def _fmt(part: pd.DataFrame, metric: str) -> str:
    v = part.loc[part["metric"] == metric, "value"]
    if metric == "out":
        count = int(round((v * 1000).sum()))
        return f"{100 * v.mean():.2f} % ({count})"
    if metric == "maxabs":
        return f"{v.median():.0f} ({v.min():.0f}-{v.max():.0f})"
    if metric.startswith("slope"):
        return f"{v.mean():.2f}"
    return f"{v.mean():.2f} / {v.median():.2f}"


def learners(paths: list[str]) -> None:
    frame = pd.concat([pd.read_csv(p) for p in paths])
    print("| candidate | seeds | W2 mean / median | W2 inliers | fd | beyond r = 5 (count) | max abs x median (range) "
          "| eps slope r = 2 / 4 / 8 | SIMS w=3: W2 mean / median | W2 inliers | beyond r = 5 | max abs x |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, part in frame.groupby("candidate", sort=False):
        base, sims = part[part["sampler"] == "base"], part[part["sampler"] == "sims-w3"]
        slopes = " / ".join(_fmt(base, m) for m in ("slope2", "slope4", "slope8"))
        print(f"| {name} | {base['seed'].nunique()} | {_fmt(base, 'w2')} | {_fmt(base, 'w2_in')} | {_fmt(base, 'fd')} "
              f"| {_fmt(base, 'out')} | {_fmt(base, 'maxabs')} | {slopes} | {_fmt(sims, 'w2')} "
              f"| {_fmt(sims, 'w2_in')} | {_fmt(sims, 'out')} | {_fmt(sims, 'maxabs')} |")


def knobs(path: str) -> None:
    frame = pd.read_csv(path, keep_default_na=False)
    print("| carry | B | interval | w=1: W2 mean / median | inliers | beyond r = 5 | w=3: W2 mean / median | inliers "
          "| beyond r = 5 | max abs x |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = frame[frame["carry"] == ""]
    print(f"| (base, w = 0) | | | {_fmt(base, 'w2')} | {_fmt(base, 'w2_in')} | {_fmt(base, 'out')} | | | "
          f"| {_fmt(base, 'maxabs')} |")
    rest = frame[frame["carry"] != ""]
    for (carry, budget, interval), part in rest.groupby(["carry", "budget", "interval"], sort=False):
        w1, w3 = part[part["omega"] == 1.0], part[part["omega"] == 3.0]
        print(f"| {carry} | {budget} | {interval} | {_fmt(w1, 'w2')} | {_fmt(w1, 'w2_in')} | {_fmt(w1, 'out')} "
              f"| {_fmt(w3, 'w2')} | {_fmt(w3, 'w2_in')} | {_fmt(w3, 'out')} | {_fmt(w3, 'maxabs')} |")


if __name__ == "__main__":
    {"learners": lambda: learners(sys.argv[2:]), "knobs": lambda: knobs(sys.argv[2])}[sys.argv[1]]()
