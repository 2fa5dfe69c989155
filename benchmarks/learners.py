"""The learners' cost on each step implementation: torch ops, the fused C kernels (ReLU learners)
and, with --compile, torch.compile (toy/compiled.py, issue 26); side by side in one process, rounds
interleaved so that a shared machine's slow spells hit every variant alike.

Three measures: a training step (full batch over |D^t| = 1250 points, per seed), guided sampling
(omega = 3, per seed and point), and whole seed-generations of the default experiment through
`run_config` (100 + 50 epochs, n_s = 2000, |D_s| = 250, exact W2 on 1000 points). With
--compile, the first training and sampling call of each compiled variant is timed apart (it
compiles: wall and CPU of this process and its compile workers), and so is the first end-to-end
round (new shapes compile).

    nice -n 5 python -m benchmarks learners --seeds 16
    OMP_NUM_THREADS=1 nice -n 10 python -m benchmarks learners --seeds 16 --compile
    OMP_NUM_THREADS=1 python -m benchmarks learners --seeds 16 --compile --peer-seeds 2   # issue 26's table

--peer-seeds K adds the one-model-at-a-time peer of benchmarks.throughput (a plain nn.Module and
torch.optim.Adam per seed) on the same end-to-end experiment, K seeds per fast learner, and each
variant's ratio to it.
"""
from __future__ import annotations

import os
import time

import torch

from benchmarks.flops import forward_flops, matmul_peak
from benchmarks.harness import best_interleaved
from loops.rng import SeedStreams
from madlab.config import RunConfig
from madlab.runner import run_config
from toy import compiled
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.learners import LEARNERS
from toy.reference import ReferenceDDPM, reference_config

SHARED = dict(seeds=16, threads=1, repeats=3)
TINY = dict(seeds=2, epochs=1, n_sample=20, gens=1, repeats=1)
VARIANTS = {  # name: DDPMConfig options (the compiled ones only with --compile)
    "resmlp-silu torch ops": dict(learner="resmlp-silu", kernels="torch"),
    "resmlp-silu compile": dict(learner="resmlp-silu", kernels="compile"),
    "resmlp-silu bf16": dict(learner="resmlp-silu", kernels="compile", precision="bf16"),
    "resmlp-sin torch ops": dict(learner="resmlp-sin", kernels="torch"),
    "resmlp-sin fused": dict(learner="resmlp-sin", kernels="fused"),
    "resmlp-sin compile": dict(learner="resmlp-sin", kernels="compile"),
    "resmlp-sin bf16": dict(learner="resmlp-sin", kernels="compile", precision="bf16"),
    "resmlp-ln torch ops": dict(learner="resmlp-ln", kernels="torch"),
    "resmlp-ln fused": dict(learner="resmlp-ln", kernels="fused"),
    "resmlp-ln compile": dict(learner="resmlp-ln", kernels="compile"),
    "resmlp-ln bf16": dict(learner="resmlp-ln", kernels="compile", precision="bf16"),
    "toy-diffusion": dict(learner="toy-diffusion", kernels="torch"),
    "toy-diffusion bf16": dict(learner="toy-diffusion", kernels="torch", precision="bf16"),
}
RATIOS = (("resmlp-silu torch ops", "resmlp-sin fused"), ("resmlp-sin fused", "resmlp-ln fused"),
          ("resmlp-sin torch ops", "resmlp-sin fused"),
          ("resmlp-silu torch ops", "resmlp-silu compile"), ("resmlp-silu compile", "resmlp-sin fused"),
          ("resmlp-sin fused", "resmlp-sin compile"), ("resmlp-ln fused", "resmlp-ln compile"),
          ("resmlp-silu torch ops", "resmlp-silu bf16"), ("resmlp-silu compile", "resmlp-silu bf16"),
          ("resmlp-sin fused", "resmlp-sin bf16"), ("resmlp-ln fused", "resmlp-ln bf16"),
          ("resmlp-ln torch ops", "resmlp-ln fused"), ("toy-diffusion", "toy-diffusion bf16"))
UNITS = {"training": "us CPU per seed-step", "guided sampling": "us CPU per seed-point",
         "seed-generation": "CPU-s per seed-generation"}


def arguments(ap) -> None:
    ap.add_argument("--epochs", type=int, default=10, help="training steps timed (full batch)")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--gens", type=int, default=2, help="generations of the end-to-end run (0: skip)")
    ap.add_argument("--compile", action="store_true", help="also the torch.compile variants")
    ap.add_argument("--only", default="", help="comma-separated variant names (default: all)")
    ap.add_argument("--peer-seeds", type=int, default=0,
                    help="also run this many seeds of the end-to-end experiment one model at a time "
                         "(benchmarks.throughput's peer) per fast learner, for the ratio to it (0: skip)")
    ap.add_argument("--seed-block", type=int, default=None,
                    help="seeds per training block for the compiled variants (default: the path's 16)")


def backend(config: DDPMConfig):
    """The toy DDPM of `config` as madlab.runner builds it: the fast path, or the autograd
    reference for toy-diffusion."""
    config = config.validate()
    if LEARNERS[config.learner].fast:
        return ToyDDPM(config)
    return ReferenceDDPM(reference_config(config))


def run_with_kernels(kernels: str, cfg: RunConfig):
    """run_config with $MADLAB_KERNELS (how a user picks the kernels of a run) set to `kernels`."""
    before = os.environ.get("MADLAB_KERNELS")
    os.environ["MADLAB_KERNELS"] = kernels
    try:
        return run_config(cfg)
    finally:
        if before is None:
            del os.environ["MADLAB_KERNELS"]
        else:
            os.environ["MADLAB_KERNELS"] = before


def cpu_with_children() -> float:
    """CPU s of this process and its finished children (inductor's compile workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def first_call(label: str, fn) -> None:
    """fn() once, its wall and CPU time (compile workers included) printed: what compiling costs."""
    w0, c0 = time.perf_counter(), cpu_with_children()
    fn()
    print(f"{label}: {time.perf_counter() - w0:6.1f} s wall, {cpu_with_children() - c0:6.1f} "
          f"CPU-s incl. compile workers", flush=True)


def run(args) -> None:
    variants = {k: v for k, v in VARIANTS.items() if args.compile or v["kernels"] != "compile"}
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only.split(",")}
    if args.compile and not compiled.available():
        print(f"torch.compile unavailable ({compiled.error()}): compiled variants skipped")
        variants = {k: v for k, v in variants.items() if v["kernels"] != "compile"}
    N = args.seeds
    streams = SeedStreams(range(N))
    data = torch.randn(N, 1250, 2)
    backends = {name: backend(DDPMConfig(**opts, seed_block=args.seed_block
                                         if opts["kernels"] == "compile" else None))
                for name, opts in variants.items()}
    models = {name: b.init(streams.keys("init")) for name, b in backends.items()}
    train = {name: (lambda b=b, m=models[name]: b.train(m, data, args.epochs, streams.keys("train")))
             for name, b in backends.items()}
    sample = {name: (lambda b=b, m=models[name]: b.sample(m, args.n_sample, streams.keys("eval"),
                                                          guide=m, omega=3.0))
              for name, b in backends.items()}
    for name in backends:   # first calls: compilation (compiled variants), warm caches
        for what, fn in (("training", train[name]), ("sampling", sample[name])):
            if variants[name]["kernels"] == "compile":
                first_call(f"first call (compiles) {what:>8} {name:>21}", fn)
            else:
                fn()
    results = {"training": {k: v / args.epochs / N * 1e6 for k, v in best_interleaved(train, args.repeats).items()},
               "guided sampling": {k: v / args.n_sample / N * 1e6
                                   for k, v in best_interleaved(sample, args.repeats).items()}}
    if args.gens:
        runs = {name: (lambda o=opts: run_with_kernels(o["kernels"], RunConfig.from_flat(
                    seeds=N, gens=args.gens, **{k: v for k, v in o.items() if k != "kernels"})))
                for name, opts in variants.items()}
        if any(o["kernels"] == "compile" for o in variants.values()):
            for name, fn in runs.items():   # the first round: new shapes compile (in-process cache)
                first_call(f"first end-to-end run {name:>21} ({N} seeds x {args.gens} generations)", fn)
        results["seed-generation"] = {k: v / N / args.gens for k, v in
                                      best_interleaved(runs, max(1, args.repeats - 1)).items()}
    if args.gens and args.peer_seeds:
        # the one-model-at-a-time peer (benchmarks.throughput) on the same experiment, per learner
        from benchmarks.throughput import peer_run
        peer = {}
        for learner in dict.fromkeys(o["learner"] for o in variants.values()):
            if not LEARNERS[learner].fast:
                continue   # toy-diffusion runs on the autograd reference: no separate peer
            cfg = RunConfig.from_flat(seeds=1, gens=args.gens, learner=learner).validate()
            peer[learner] = sum(sum(peer_run(cfg, s).values()) for s in range(args.peer_seeds)) / (
                args.peer_seeds * args.gens)
            print(f"{'seed-generation':>16} {learner + ' peer':>21}: {peer[learner]:9.3f} "
                  f"{UNITS['seed-generation']} (one nn.Module per seed, {args.peer_seeds} seeds)")
        for name, o in variants.items():
            if o["learner"] in peer:
                print(f"RATIO {o['learner']} peer / {name}: seed-generation "
                      f"{peer[o['learner']] / results['seed-generation'][name]:.2f}x")
    for measure, row in results.items():
        for name, value in row.items():
            print(f"{measure:>16} {name:>21}: {value:9.3f} {UNITS[measure]}")
    # the training step's share of the machine's matmul rate, both measured here: FLOPs are the
    # matrix products only (benchmarks.flops.forward_flops, x 3 for a training step), so a lower bound
    peaks = {dt: matmul_peak("cpu", dtype=dt) for dt in (torch.float32, torch.bfloat16)}
    print(f"matmul peak (2048^3, one thread): fp32 {peaks[torch.float32] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks[torch.bfloat16] / 1e9:.0f} GFLOP/s")
    for name, b in backends.items():
        if isinstance(b, ToyDDPM):
            rate = 3 * forward_flops(b) * data.shape[1] / (results["training"][name] * 1e-6)
            peak = peaks[b.dtype]
            print(f"training step {name:>21}: {rate / 1e9:6.1f} GFLOP/s = {rate / peak:5.1%} of the "
                  f"{'bf16' if b.dtype == torch.bfloat16 else 'fp32'} matmul peak")
    for a, b in RATIOS:
        if a in variants and b in variants:
            print(f"RATIO {a} / {b} (N={N}): " + ", ".join(
                f"{measure} {row[a] / row[b]:.2f}x" for measure, row in results.items()))
