"""Screen toy-DDPM learners on generation 1 only: quality and tail health, no loop ratio.

For each candidate learner (toy/reference.py, autograd over stacked seeds), seeds 0..N-1 as a
generation-1 `madlab run` would draw them: D_r = 1000 points of p_r = N(0, [[2, 1], [1, 2]]),
the base model trained 100 epochs, SIMS's auxiliary model = the base fine-tuned 50 epochs on
n_s = 2000 of its own samples. Measured per seed, for the base model (omega = 0) and for SIMS
guidance at omega = 3 (the sampler the paper uses; guidance amplifies far-field error):

  w2        exact W2, 1000 model samples vs 1000 fresh real samples (POT)
  w2_in     the same on inliers (Mahalanobis radius <= 5 under p_r; analysis/tails.py)
  fd        Frechet distance of the 1000 samples' mean/covariance to p_r's
  out       outlier share: fraction of samples beyond Mahalanobis radius 5 (p_r's own: 3.7e-6)
  maxabs    largest |x| among the samples
  slope_r   radial eps at t = T at radius r = 2, 4, 8, over the exact eps of the noised p_r
            (1 = exact; the guided slope is (1 + w) slope_base - w slope_aux)

Usage (from the repository root, PYTHONPATH=.):
  OMP_NUM_THREADS=1 python docs/calibration/learner_screen.py [--seeds 16] [--out NAME] [CANDIDATE ...]
  (no candidate: all of CANDIDATES; rows go to docs/calibration/NAME.csv, the tables to stdout)
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from analysis.distances import per_seed
from analysis.tails import distance_on_inliers, outlier_share, own_rate
from loops import SeedStreams, make_algorithm
from toy.reference import ReferenceDDPM, learner
from toy.targets import paper_gaussian

HERE = Path(__file__).resolve().parent
RADII = (2.0, 4.0, 8.0)
OMEGA = 3.0
N_REAL, N_EVAL, EPOCHS, N_AUX, AUX_EPOCHS = 1000, 1000, 100, 2000, 50

TD = "toy-diffusion"
CANDIDATES: dict[str, tuple[str, dict]] = {
    # today's default and its family
    "resmlp-ln": ("resmlp-ln", {}),
    "resmlp": ("resmlp-ln", dict(layer_norm=False)),
    "resmlp-ln-clip0.5": ("resmlp-ln", dict(max_beta=0.5)),
    "resmlp-ln-T100": ("resmlp-ln", dict(T=100)),
    "resmlp-ln-b64": ("resmlp-ln", dict(batch_size=64, lr=1e-3)),
    "resmlp-clip0.5": ("resmlp-ln", dict(layer_norm=False, max_beta=0.5)),
    "resmlp-T100": ("resmlp-ln", dict(layer_norm=False, T=100)),
    "resmlp-raw": ("resmlp-ln", dict(layer_norm=False, time_input="raw")),
    "resmlp-sin": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal")),
    # the paper's cited learner and one-knob variants of it
    TD: (TD, {}),
    "td-shuffled": (TD, dict(shuffle=True)),
    "td-scaled": (TD, dict(time_input="scaled")),
    "td-sin": (TD, dict(time_input="sinusoidal")),
    "td-lr3e-3": (TD, dict(lr=3e-3)),
    "td-lr1e-2": (TD, dict(lr=1e-2)),
    "td-linear-decay": (TD, dict(lr_schedule="linear")),
    "td-grid-T": (TD, dict(grid="T", max_beta=0.999)),
    "td-clip0.5": (TD, dict(max_beta=0.5)),
    "td-T40": (TD, dict(T=40)),
    "td-T100": (TD, dict(T=100)),
    "td-t1": (TD, dict(train_from_zero=False)),
    "td-b128": (TD, dict(batch_size=128, shuffle=True)),
    # toy-diffusion's network with madlab's recipe (t = 1..T, lr 3e-3 decaying linearly, shuffled)
    "mlp": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False)),
    "mlp-raw": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, time_input="raw")),
    "mlp-const1e-3": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, lr=1e-3,
                                        lr_schedule="constant")),
    "mlp-T100": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, T=100)),
    "mlp-clip0.5": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, max_beta=0.5)),
    "mlp-b128": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, batch_size=128, lr=1e-3)),
    # round 2: around the best of round 1 (resmlp-sin: no LayerNorm, sinusoidal time input)
    "resmlp-ln-sin": ("resmlp-ln", dict(time_input="sinusoidal")),
    "resmlp-sin-clip0.5": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", max_beta=0.5)),
    "resmlp-sin-T100": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", T=100)),
    "resmlp-sin-lr1e-3": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", lr=1e-3)),
    "resmlp-sin-lr1e-2": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", lr=1e-2)),
    "resmlp-sin-const": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", lr_schedule="constant")),
    "resmlp-sin-b128": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", batch_size=128, lr=1e-3)),
    "resmlp-sin-w128": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", width=128)),
    "resmlp-sin-d4": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", depth=4)),
    "resmlp-sin-f4": ("resmlp-ln", dict(layer_norm=False, time_input="sinusoidal", n_frequencies=4)),
    "mlp-sin": ("resmlp-ln", dict(arch="mlp", depth=4, layer_norm=False, time_input="sinusoidal")),
    "td-sin-lr3e-3": (TD, dict(time_input="sinusoidal", lr=3e-3)),
}
METRICS = ["w2", "w2_in", "fd", "out", "maxabs"] + [f"slope{r:g}" for r in RADII]


def measure(x: torch.Tensor, real: torch.Tensor, target) -> dict[str, torch.Tensor]:
    """Per-seed quality and tail numbers of samples x [N, n, 2] against real [N, m, 2]."""
    return {"w2": per_seed("w2", x, real), "w2_in": distance_on_inliers("w2", x, real, target),
            "fd": per_seed("fd", x, None, target), "out": outlier_share(x, target),
            "maxabs": x.norm(dim=-1).amax(dim=-1).double()}


def generation_one(config, seeds: list[int], target, omegas=(OMEGA,)):
    """Train base and auxiliary models for `seeds` and measure the base and the guided samplers.
    Returns {sampler: {metric: [N]}} with sampler 'base' and 'sims-w{omega}'."""
    backend = ReferenceDDPM(config)
    streams = SeedStreams(seeds)
    data = target.sample(N_REAL, streams.keys("real", 1))
    sims = make_algorithm("sims", epochs=EPOCHS, omega=omegas[0], n_aux=N_AUX, aux_epochs=AUX_EPOCHS)
    trained = sims(backend, data, streams, 1)
    real = target.sample(N_EVAL, streams.keys("eval-real", 1))
    slope_base = backend.eps_slope(trained.model, target, RADII)
    slope_aux = backend.eps_slope(trained.guide, target, RADII)
    out = {}
    for omega in (0.0, *omegas):
        x = backend.sample(trained.model, N_EVAL, streams.keys("eval", 1),
                           guide=trained.guide, omega=omega)
        row = measure(x, real, target)
        slope = (1 + omega) * slope_base - omega * slope_aux
        row |= {f"slope{r:g}": slope[:, i] for i, r in enumerate(RADII)}
        out["base" if omega == 0 else f"sims-w{omega:g}"] = row
    return out


def describe(values: np.ndarray, metric: str) -> str:
    if metric == "out":
        return f"{100 * values.mean():6.2f} %"
    if metric == "maxabs":
        return f"{np.median(values):6.1f} ({values.min():.0f}-{values.max():.0f})"
    if metric.startswith("slope"):
        return f"{values.mean():5.2f}"
    return f"{values.mean():5.2f}/{np.median(values):4.2f} ({values.min():.2f}-{values.max():.2f})"


HEADER = ("| candidate | sampler | W2 mean/median (range) | W2 inliers | fd | outliers | max abs x median (range) "
          "| slope r=2 | 4 | 8 | s |\n|---|---|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("candidates", nargs="*", help=f"names from CANDIDATES (default all): {', '.join(CANDIDATES)}")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--out", default="learner_screen", help="CSV name under docs/calibration/")
    args = ap.parse_args()
    torch.set_num_threads(1)
    target = paper_gaussian()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    names = args.candidates or list(CANDIDATES)
    for name in names:
        if name not in CANDIDATES:
            sys.exit(f"unknown candidate {name!r}; choose from {', '.join(CANDIDATES)}")
    path = HERE / f"{args.out}.csv"
    new = not path.exists()
    print(f"# learner screen, seeds {seeds[0]}..{seeds[-1]}, |D_r| = {N_REAL}, {EPOCHS} epochs, SIMS "
          f"omega = {OMEGA:g} (aux: {AUX_EPOCHS} epochs on n_s = {N_AUX}); p_r's own outlier share "
          f"{own_rate(target):.1e}", flush=True)
    streams = SeedStreams(seeds)   # p_r itself against the same real sample: the estimator floors
    floor = measure(target.sample(N_EVAL, streams.keys("experiment", 1)),
                    target.sample(N_EVAL, streams.keys("eval-real", 1)), target)
    print("p_r itself: " + ", ".join(f"{m} {describe(v.numpy(), m)}" for m, v in floor.items()))
    print(HEADER, flush=True)
    with path.open("a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["candidate", "base_learner", "changes", "sampler", "seed", "metric", "value"])
        for name in names:
            base, changes = CANDIDATES[name]
            tick = time.perf_counter()
            result = generation_one(learner(base, **changes), seeds, target)
            seconds = time.perf_counter() - tick
            for sampler, row in result.items():
                for metric in METRICS:
                    for seed, value in zip(seeds, row[metric].tolist()):
                        writer.writerow([name, base, repr(changes), sampler, seed, metric, f"{value:.6g}"])
                cells = [describe(row[m].numpy(), m) for m in METRICS]
                print(f"| {name} | {sampler} | " + " | ".join(cells) + f" | {seconds:.0f} |", flush=True)
            fh.flush()


if __name__ == "__main__":
    main()
