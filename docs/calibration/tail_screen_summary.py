"""One line per configuration of tail_screen.sh: the distance (mean / median over seeds), the
count of samples beyond Mahalanobis radius 5 among all seeds' samples, that share against p_r's
own (analysis.tails.own_rate: exp(-12.5) = 3.7e-6), with an exact 95 % Poisson interval on the
count, and how the outliers spread over seeds.

Usage: python docs/calibration/tail_screen_summary.py runs/tail1
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2

from analysis.tails import own_rate
from toy.config import LEARNERS
from toy.targets import paper_gaussian

OWN = own_rate(paper_gaussian())   # p_r's share beyond radius 5, exp(-12.5)


def poisson_band(k: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    lo = 0.0 if k == 0 else chi2.ppf(a / 2, 2 * k) / 2
    return lo, chi2.ppf(1 - a / 2, 2 * k + 2) / 2


def main(root: str) -> None:
    print("| configuration | learner | omega | guide t | dist mean / median | beyond r = 5 (of n) | x p_r's own [95 %] | seeds with any, most in one |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(Path(root).glob("*/results.parquet")):
        d = pd.read_parquet(path)
        dist = "w2" if (d.metric == "w2").any() else "fd"
        v = d[d.metric == dist].value.to_numpy()
        share = d[d.metric == "outlier_share"].value.to_numpy()
        n = int(d.n_eval.iloc[0])
        counts = np.rint(share * n).astype(int)
        k, total = int(counts.sum()), len(counts) * n
        lo, hi = poisson_band(k)
        learner = d.learner.iloc[0] if "learner" in d else d.backend.iloc[0]
        if "activation" in d and d.activation.iloc[0] != LEARNERS[learner]["activation"]:
            learner += f" with {d.activation.iloc[0]}"
        guide = f"{d.guide_t_min.iloc[0]}..{d.guide_t_max.iloc[0]}" if "guide_t_max" in d else ""
        print(f"| {path.parent.name} | {learner} | {d.omega.iloc[0]:g} | {guide} | {dist} {v.mean():.3f} / "
              f"{np.median(v):.3f} | {k} of {total:,} | {k / total / OWN:.1f} [{lo / total / OWN:.1f}, "
              f"{hi / total / OWN:.1f}] | {np.count_nonzero(counts)}, {counts.max()} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/tail1")
