"""Calibration driver: run augment loops for the Figure 5 grid and append per-seed distances to a CSV.

Each row: candidate, algo, omega, n_synth, seed, generation, fd (Frechet distance to the true
(mu, Sigma) on all n_eval model samples), w2 (exact OT between the first 1000 model samples and
1000 fresh real samples), seconds per generation for the whole ensemble.

Usage (from the repository root):
  OMP_NUM_THREADS=1 python docs/calibration/calibrate.py NAME --algo standard --n-synth 125,250,500,1000 \
      --seeds 16 --gens 30 --n-eval 10000 --set batch_size=64 lr=1e-3 warm_start=False
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from analysis.distances import per_seed
from loops import SeedStreams
from madlab.config import RunConfig
from madlab.runner import build_loop

HERE = Path(__file__).parent
W2_POINTS = 1000  # exact OT at 1000 vs 1000 points (the default estimator's size)
RATIO_FROM = 20   # E[dist(G^inf)] = mean over generations 20..T (the paper); --ratio-from to screen cheaper
PLATEAU_CHECK = (2, 5, 10, 15)  # also measured (fd and w2 on 1000 samples) to see the approach


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def run(name: str, algo: str, omega: float, n_synth: int, seeds: int, gens: int, n_eval: int,
        overrides: dict, out: Path, first_seed: int = 0, ratio_from: int = RATIO_FROM) -> None:
    cfg = RunConfig.from_flat(algo=algo, omega=omega, n_synth=n_synth, seeds=seeds, gens=gens,
                              n_eval=2, first_seed=first_seed, metric=["fd"], **overrides).validate()
    loop = build_loop(cfg)  # the loop's own evaluation sample is 2 points, unused: we sample below
    streams = SeedStreams(cfg.seed_list())
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["candidate", "algo", "omega", "n_synth", "seed", "generation", "fd",
                             "w2", "n_eval", "seconds", "settings"])
        settings = " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
        tick = time.perf_counter()
        for rec in loop.run(streams, lambda samples, t: {}, keep_models=True):
            t = rec.generation
            if t == 1 or t >= ratio_from:
                n = n_eval           # the generations the convergence ratio uses
            elif t in PLATEAU_CHECK:
                n = W2_POINTS        # a cheaper look at the approach to the plateau
            else:
                continue
            samples = rec.model.sample(n, streams.keys("eval", t))
            real = loop.target.sample(W2_POINTS, streams.keys("eval-real", t))
            fd = per_seed("fd", samples, None, loop.target)
            w2 = per_seed("w2", samples[:, :W2_POINTS], real, loop.target)
            now = time.perf_counter()
            for i, seed in enumerate(cfg.seed_list()):
                writer.writerow([name, algo, omega, n_synth, seed, t, f"{fd[i].item():.6f}",
                                 f"{w2[i].item():.6f}", n, f"{now - tick:.2f}", settings])
            fh.flush()
            print(f"{name} {algo} w={omega} s={n_synth} gen {t}: fd {fd.mean():.4f} "
                  f"w2 {w2.mean():.4f} (n_eval {n}, {now - tick:.1f}s since last)", flush=True)
            tick = now


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name", help="candidate name (also the CSV file name)")
    p.add_argument("--algo", default="standard")
    p.add_argument("--omega", default="0", help="comma list of omegas (SIMS)")
    p.add_argument("--n-synth", default="125,250,500,1000", help="comma list of |D_s|")
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--gens", type=int, default=30)
    p.add_argument("--n-eval", type=int, default=4000, help="model samples for fd at gen 1 and 20..T")
    p.add_argument("--ratio-from", type=int, default=RATIO_FROM,
                   help="first generation measured at full n_eval (and averaged for G^inf)")
    p.add_argument("--set", nargs="*", default=[], help="RunConfig overrides key=value")
    p.add_argument("--out", default=None, help="CSV path (default docs/calibration/NAME.csv)")
    a = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    overrides = {k: parse_value(v) for k, v in (s.split("=", 1) for s in a.set)}
    out = Path(a.out) if a.out else HERE / f"{a.name}.csv"
    for omega in (float(w) for w in a.omega.split(",")):
        for n_synth in (int(s) for s in a.n_synth.split(",")):
            run(a.name, a.algo, omega, n_synth, a.seeds, a.gens, a.n_eval, overrides, out,
                a.first_seed, a.ratio_from)


if __name__ == "__main__":
    main()
