"""(d) Share of a generation spent in training, sampling and distance evaluation; the OT figure.

Runs the default experiment (augment, SIMS w=3, default toy DDPM, full epochs 100/50, n_s = 2000,
W2 on n_eval = 1000 points) for N seeds and a few generations through `madlab.runner.run_config`
and prints the Loop's own phase timings: train = A(D^t) (base training, sampling S, fine-tuning),
synth = drawing D_s^t, eval = drawing n_eval points + exact W2 per seed. Then times exact W2 on
1000 vs 1000 points per seed: POT's network simplex (ot.emd2, what w2 uses) vs scipy's exact
assignment solver (the same value for n = m), and per_seed over two threads.

    nice -n 5 python -m benchmarks breakdown --seeds 16 --gens 2
    nice -n 5 python -m benchmarks breakdown --seeds 16 --gens 2 --precision bf16
"""
from __future__ import annotations

from analysis.distances import per_seed, w2
from benchmarks.harness import Timer, best_of
from benchmarks.ot_solvers import pot, scipy_lsa
from loops.rng import SeedStreams
from toy.config import DEFAULT_LEARNER
from madlab.config import RunConfig
from madlab.runner import run_config
from toy.targets import paper_gaussian


SHARED = dict(seeds=16, threads=1, repeats=2, learner=DEFAULT_LEARNER)
TINY = dict(seeds=2, gens=1, epochs=1, aux_epochs=1, ot_seeds=2, repeats=1)


def arguments(ap) -> None:
    ap.add_argument("--gens", type=int, default=2, help="generations")
    ap.add_argument("--epochs", type=float, default=100, help="base epochs (default experiment)")
    ap.add_argument("--aux-epochs", type=float, default=50, help="SIMS fine-tune epochs")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                    help="the network's matrix products (bf16: compiled; one untimed run first compiles)")
    ap.add_argument("--ot-seeds", type=int, default=8, help="seeds timed in the OT comparison")


def run(args) -> None:
    cfg = RunConfig.from_flat(seeds=args.seeds, gens=args.gens, epochs=args.epochs,
                              aux_epochs=args.aux_epochs, metric=["w2"], learner=args.learner,
                              precision=args.precision).validate()
    if args.precision == "bf16":
        run_config(cfg)   # compiles (torch.compile); the timed run below is the steady state
    with Timer() as t:
        frame = run_config(cfg)
    per_gen = frame.drop_duplicates(["generation"])
    phases = {k: float(per_gen[f"time_{k}_s"].sum()) for k in ("train", "synth", "eval")}
    total = sum(phases.values())
    sg = args.seeds * args.gens
    print(f"default experiment ({args.precision}), N={args.seeds}, {args.gens} generations: {t.wall / sg:.3f} s wall, "
          f"{t.cpu / sg:.3f} s CPU per seed-generation")
    for k, label in (("train", "training (base + S + fine-tune)"), ("synth", "sampling D_s"),
                     ("eval", "evaluation (n_eval samples + exact W2)")):
        print(f"  {label:<40} {phases[k] / total:6.1%}  ({phases[k] / sg:.3f} s per seed-gen)")

    streams = SeedStreams(range(args.ot_seeds))
    target = paper_gaussian()
    x, y = target.sample(1000, streams.keys("eval")), target.sample(1000, streams.keys("eval-real"))

    we, ce = best_of(lambda: pot(x, y), args.repeats)
    wa, ca = best_of(lambda: scipy_lsa(x, y), args.repeats)
    agree = max(abs(w2(a, b) ** 2 - float(v)) for a, b, v in zip(x[:2], y[:2], scipy_lsa(x[:2], y[:2])))
    n = args.ot_seeds
    print(f"exact W2, 1000 vs 1000 points, per seed: ot.emd2 {ce / n:.3f} s CPU ({we / n:.3f} wall); "
          f"linear_sum_assignment {ca / n:.3f} s CPU ({wa / n:.3f} wall) -> {ce / ca:.1f}x; "
          f"|W2^2 difference| {agree:.1e}")
    wj, _ = best_of(lambda: per_seed("w2", x, y, n_jobs=2), args.repeats)
    print(f"per_seed(n_jobs=2), two threads: {wj / n:.3f} s wall per seed -> {we / wj:.1f}x "
          f"the in-process wall time")
