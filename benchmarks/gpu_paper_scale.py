"""One paper-scale configuration on one device: 1000 seeds x 100 generations, SIMS, timed.

The default experiment of the SIMS paper's Figure 5 (augment loop, SIMS w = 3, |D_r| = 1000,
|D_s| = 250, n_s = 2000, base 100 epochs, fine-tune 50 epochs, default toy DDPM), all seeds in
one process through `madlab.runner.run_config`. On a GPU the toy DDPM trains all seeds as one
block. Per-seed random numbers are drawn on the device (Philox counters, loops/philox.py).

Metric: `fd` (Frechet, per seed in closed form, costs nothing) by default. Exact W2 (`--metric
w2`) solves 1000 OT problems of 1000 x 1000 points per generation: on CUDA samples by the batched
auction on the device; with MADLAB_OT=pot on the host's CPU (about 0.06-0.08 s each per core,
spread over --ot-jobs threads). `python -m benchmarks gpu_check` is the prepared, time-boxed GPU
check.

    python -m benchmarks gpu_paper_scale --device cuda                 # the paper-scale run
    python -m benchmarks gpu_paper_scale --seeds 4 --gens 2 --device cpu --epochs 2 --aux-epochs 1
"""
from __future__ import annotations

import os
import time

import torch

from benchmarks.harness import peak_rss_gib

SHARED = dict(seeds=1000, device="cuda")
TINY = dict(seeds=4, gens=2, device="cpu", epochs=2, aux_epochs=1)


def arguments(ap) -> None:
    ap.add_argument("--gens", type=int, default=100, help="generations")
    ap.add_argument("--n-synth", type=int, default=250, help="|D_s| per generation")
    ap.add_argument("--epochs", type=float, default=100, help="base epochs per generation")
    ap.add_argument("--aux-epochs", type=float, default=50, help="SIMS fine-tune epochs")
    ap.add_argument("--omega", type=float, default=3.0, help="SIMS guidance weight")
    ap.add_argument("--metric", default="fd", help="fd | w2 | w1 (comma-separated allowed)")
    ap.add_argument("--ot-jobs", type=int, default=0,
                    help="CPU threads for exact OT (0: torch's thread count, i.e. all cores)")
    ap.add_argument("--out", default=None, help="optional: write the results table here (.parquet)")


def run(args) -> None:
    from madlab.config import ConfigError, RunConfig
    from madlab.runner import run_config
    if args.ot_jobs > 0:
        os.environ["MADLAB_OT_JOBS"] = str(args.ot_jobs)  # read by runner.make_evaluate
    try:
        cfg = RunConfig.from_flat(seeds=args.seeds, gens=args.gens, n_synth=args.n_synth,
                                  epochs=args.epochs, aux_epochs=args.aux_epochs, omega=args.omega,
                                  algo="sims", loop="augment", metric=args.metric, device=args.device,
                                  seed_chunk=max(args.seeds, 1)).validate()
    except ConfigError as err:
        raise SystemExit(f"error: {err}")
    print(f"config: {args.seeds} seeds x {args.gens} generations, augment, SIMS w={args.omega}, "
          f"|D_s|={args.n_synth}, epochs {args.epochs}/{args.aux_epochs}, metric {args.metric}, "
          f"device {args.device}", flush=True)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        gens_done = done // args.seeds
        elapsed = time.perf_counter() - started
        print(f"  generation {gens_done}/{args.gens}: {elapsed:8.1f} s elapsed, "
              f"ETA {elapsed / max(gens_done, 1) * (args.gens - gens_done):8.1f} s", flush=True)

    frame = run_config(cfg, progress=progress)
    seconds = time.perf_counter() - started
    last = frame[frame.generation == frame.generation.max()]
    first = frame[frame.generation == 1]
    for metric in cfg.evaluation.metric:
        e1 = first[first.metric == metric].value.mean()
        eT = last[last.metric == metric].value.mean()
        print(f"{metric}: E[dist(G^1)] = {e1:.4f}, E[dist(G^{args.gens})] = {eT:.4f}, "
              f"ratio {eT / e1:.3f}")
    gpu_mem = ""
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        gpu_mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    print(f"TIME: {seconds:.1f} s for {args.seeds} seeds x {args.gens} generations "
          f"({seconds / 60:.2f} min; {args.seeds * args.gens / seconds:.1f} seed-gen/s); "
          f"peak host memory {peak_rss_gib():.2f} GiB{gpu_mem}")
    if args.out:
        frame.to_parquet(args.out)
