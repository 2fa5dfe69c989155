"""The SIMS knobs the paper names, measured at generation 1 only (no loop ratio).

One base model per seed (the learner's 100 epochs on D_r, seeds 0..N-1 as `madlab run` draws
them) and one auxiliary set S of n_s = 2000 base samples; then, for each auxiliary budget B (epochs
of fine-tuning on S) and each way of starting the fine-tune (Adam moments and lr schedule
restarted, as madlab does, or continued from where the base's training left them), the guided
sampler (1 + w) eps_base - w eps_aux at w = 1, 3, with guidance on all steps or on a t-interval
(the paper's appendix A). Measured per seed as in learner_screen.py: W2 (1000 vs 1000), W2 on
inliers, fd, outlier share (radius 5), largest |x|.

Usage (from the repository root, PYTHONPATH=.):
  OMP_NUM_THREADS=1 python docs/calibration/sims_knobs_screen.py LEARNER [--changes k=v ...] [--seeds 16] [--out NAME]
"""
from __future__ import annotations

import argparse
import ast
import csv
import time
from dataclasses import replace
from pathlib import Path

import torch

from learner_screen import N_AUX, N_EVAL, N_REAL, EPOCHS, describe, measure
from loops import SeedStreams
from toy.reference import ReferenceDDPM, learner
from toy.targets import paper_gaussian

HERE = Path(__file__).resolve().parent
BUDGETS = (5, 10, 20, 50)
OMEGAS = (1.0, 3.0)
CARRIES = {  # (finetune_adam, finetune_lr)
    "restart": ("restart", "restart"),
    "continue": ("continue", "continue"),
    "adam-only": ("continue", "restart"),
    "lr-only": ("restart", "continue"),
}
METRICS = ["w2", "w2_in", "fd", "out", "maxabs"]


def intervals(T: int) -> dict[str, tuple[int, int]]:
    """Guidance intervals [from, to] over reverse steps t = T..1."""
    return {"all": (1, T), f"t<={T // 2}": (1, T // 2), f"t<={3 * T // 4}": (1, 3 * T // 4),
            f"t>{T // 2}": (T // 2 + 1, T)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("learner")
    ap.add_argument("--changes", nargs="*", default=[], help="field=value changes to the learner")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    changes = {k: ast.literal_eval(v) for k, v in (c.split("=", 1) for c in args.changes)}
    config = learner(args.learner, **changes)
    label = args.learner + "".join(f",{k}={v}" for k, v in changes.items())
    target = paper_gaussian()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    streams = SeedStreams(seeds)
    backend = ReferenceDDPM(config)
    data = target.sample(N_REAL, streams.keys("real", 1))
    real = target.sample(N_EVAL, streams.keys("eval-real", 1))
    tick = time.perf_counter()
    base = backend.train(backend.init(streams.keys("init", 1)), data, EPOCHS, streams.keys("train", 1))
    synthetic = backend.sample(base, N_AUX, streams.keys("aux-sample", 1))
    path = HERE / f"{args.out or 'sims_knobs_' + args.learner}.csv"
    new = not path.exists()
    print(f"# SIMS knobs at generation 1: {label}, seeds {seeds[0]}..{seeds[-1]}, aux on n_s = {N_AUX}", flush=True)
    base_row = measure(backend.sample(base, N_EVAL, streams.keys("eval", 1)), real, target)
    print("| carry | B | omega | interval | W2 mean/median (range) | W2 inliers | fd | outliers | max abs x |\n"
          "|---|---|---|---|---|---|---|---|---|")
    print("| base | | 0 | | " + " | ".join(describe(base_row[m].numpy(), m) for m in METRICS) + " |", flush=True)
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["learner", "carry", "budget", "omega", "interval", "seed", "metric", "value"])
        for seed, *values in zip(seeds, *(base_row[m].tolist() for m in METRICS)):
            for m, v in zip(METRICS, values):
                writer.writerow([label, "", 0, 0.0, "", seed, m, f"{v:.6g}"])
        for carry, (adam, lr) in CARRIES.items():
            tuner = ReferenceDDPM(replace(config, finetune_adam=adam, finetune_lr=lr))
            for budget in BUDGETS:
                aux = tuner.finetune(base, synthetic, budget, streams.keys("finetune", 1))
                for name, (lo, hi) in intervals(config.T).items():
                    sampler = ReferenceDDPM(replace(config, guidance_from=lo, guidance_to=hi))
                    for omega in OMEGAS:
                        x = sampler.sample(base, N_EVAL, streams.keys("eval", 1), guide=aux, omega=omega)
                        row = measure(x, real, target)
                        for m in METRICS:
                            for seed, v in zip(seeds, row[m].tolist()):
                                writer.writerow([label, carry, budget, omega, name, seed, m, f"{v:.6g}"])
                        print(f"| {carry} | {budget} | {omega:g} | {name} | "
                              + " | ".join(describe(row[m].numpy(), m) for m in METRICS) + " |", flush=True)
                fh.flush()
    print(f"# {time.perf_counter() - tick:.0f}s")


if __name__ == "__main__":
    main()
