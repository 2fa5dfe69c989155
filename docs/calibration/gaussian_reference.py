"""Reference: the augment-loop convergence ratio of an ideal Gaussian learner (MLE fit of mean and
covariance, the `gaussian` backend), measured with fd on n_eval samples, 256 seeds, 40 generations.

Usage: OMP_NUM_THREADS=1 python docs/calibration/gaussian_reference.py
"""
import pandas as pd

from madlab.config import RunConfig
from madlab.runner import run_config

rows = []
for n_synth in (125, 250, 500, 1000):
    for n_eval in (4000, 100000):
        frame = run_config(RunConfig(backend="gaussian", algo="standard", loop="augment",
                                     n_synth=n_synth, gens=40, seeds=256, metric=["fd"],
                                     n_eval=n_eval))
        per_gen = frame.groupby("generation")["value"].mean()
        rows.append({"n_synth": n_synth, "n_eval": n_eval, "fd_G1": per_gen.loc[1],
                     "fd_ratio": per_gen.loc[20:].mean() / per_gen.loc[1]})
print(pd.DataFrame(rows).round(3).to_string(index=False))
