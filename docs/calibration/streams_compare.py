"""Old (madlab 0.1: one torch generator per seed) against new (Philox counter) random streams at
the science level: the same configuration, the learner both versions have (resmlp-ln), 24 seeds.

    # at e5eb300 (old streams) and at the new code, the same command:
    madlab run --loop augment --algo standard --n-synth 250 --gens 12 --seeds 24 --first-seed 300 \
        --metric w2,fd [--learner resmlp-ln] --out runs/streams-{old,new}
    python docs/calibration/streams_compare.py runs/streams-old runs/streams-new

Prints, per metric, the median over seeds at G^1 and of the per-seed mean over G^8..12 for both,
and a 95 % percentile-bootstrap band of the difference of medians (new - old): "the same" means
the band holds 0.
"""
import sys

import numpy as np
import pandas as pd


def main(old: str, new: str, boot: int = 4000) -> None:
    rng = np.random.default_rng(0)
    tables = {}
    for name, path in (("old", old), ("new", new)):
        r = pd.read_parquet(f"{path}/results.parquet")
        tables[name] = r[r.metric.isin(["w2", "fd"])].pivot_table(
            index=["metric", "seed"], columns="generation", values="value")
    for m in ("w2", "fd"):
        for label, cols in (("G^1", [1]), ("G^8..12 (per-seed mean)", list(range(8, 13)))):
            a = tables["old"].loc[m][cols].mean(axis=1).to_numpy()
            b = tables["new"].loc[m][cols].mean(axis=1).to_numpy()
            d = [np.median(rng.choice(b, len(b))) - np.median(rng.choice(a, len(a))) for _ in range(boot)]
            lo, hi = np.percentile(d, [2.5, 97.5])
            print(f"{m} {label}: median old {np.median(a):.3f}, new {np.median(b):.3f}; "
                  f"new - old 95% band [{lo:.3f}, {hi:.3f}] -> {'same' if lo <= 0 <= hi else 'DIFFERENT'}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
