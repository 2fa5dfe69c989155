"""Regenerate the small results set the report and notebook tests read: real madlab output of tiny configs.

    OMP_NUM_THREADS=1 python tests/data/make_small_results.py

writes tests/data/small_sweep/results.parquet (a Figure 5 grid: |D_s| in {125, 250} x omega in
{0, 1, 3}, 4 seeds, 6 generations, metrics w2 and fd) and tests/data/small_run/ (one run directory,
config.json + results.parquet, as `madlab run` writes it). The models are deliberately small (60
epochs of minibatch 64 at lr 1e-3, the defaults when the set was first made; |D_r| = 500): the set
exercises the code paths, it does not reproduce the paper's numbers.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from madlab.config import RunConfig
from madlab.runner import run_config
from madlab.store import write_config, write_results

HERE = Path(__file__).resolve().parent
TINY = dict(loop="augment", algo="sims", seeds=4, gens=6, epochs=60, aux_epochs=30, n_aux=500,
            n_real=500, n_eval=300, width=32, depth=1, batch_size=64, lr=1e-3, metric=["w2", "fd"])
SIZES = (125, 250)
OMEGAS = (0.0, 1.0, 3.0)


def main() -> None:
    torch.set_num_threads(1)
    frames = [run_config(RunConfig.from_flat(**TINY, n_synth=n, omega=w)) for n in SIZES for w in OMEGAS]
    (HERE / "small_sweep").mkdir(exist_ok=True)
    write_results(HERE / "small_sweep", pd.concat(frames, ignore_index=True))
    run = RunConfig.from_flat(**{**TINY, "gens": 8}, n_synth=250, omega=3.0).validate()
    write_config(HERE / "small_run", run)
    write_results(HERE / "small_run", run_config(run))


if __name__ == "__main__":
    main()
