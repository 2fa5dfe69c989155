"""(a) Seed-generations per second of the default experiment: N seeds vectorized vs one at a time.

Default experiment: augment loop, SIMS with omega = 3, default toy DDPM, |D_r| = 1000,
|D_s| = 250, n_s = 2000, evaluation W2 on 1000 points. Epochs and generations may be shortened
(the same for both sides). Vectorized = `madlab.runner.run_config` (the product path, exact OT
per seed included); one at a time = benchmarks.peer: a plain nn.Module + torch.optim.Adam per
seed, trained after each other, W2 by POT's ot.emd2 as peers compute it.

    nice -n 5 python -m benchmarks throughput --seeds 64 --peer-seeds 4 --gens 2 --epochs 10 --aux-epochs 5
"""
from __future__ import annotations

import copy

import numpy as np
import ot
import torch

from analysis.distances import w2
from benchmarks import peer
from benchmarks.flops import forward_flops, matmul_peak
from benchmarks.harness import Timer, best_of
from loops.rng import SeedStreams
from madlab.config import RunConfig
from madlab.runner import run_config
from toy.config import DEFAULT_LEARNER
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.targets import make_target


def peer_run(cfg: RunConfig, seed: int) -> dict[str, float]:
    """One seed of the default experiment, the peers' way; returns seconds per phase."""
    g = torch.Generator().manual_seed(seed)
    backend, o = ToyDDPM(cfg.ddpm()), cfg.flat()
    target = make_target(o["target"])
    streams = SeedStreams([seed])
    real = target.sample(o["n_real"], streams.keys("real", 1))[0]
    synthetic, seconds = None, {"train": 0.0, "synth": 0.0, "eval": 0.0}
    for t in range(1, o["gens"] + 1):
        data = real if synthetic is None else torch.cat([real, synthetic])
        with Timer() as tt:
            base = peer.train(peer.EpsNet(backend), data, o["epochs"], generator=g)
            aux_set = peer.sample(base, o["n_aux"], generator=g)
            aux = peer.train(copy.deepcopy(base), aux_set, o["aux_epochs"], generator=g)
        with Timer() as ts:
            if t < o["gens"]:
                synthetic = peer.sample(base, o["n_synth"], aux, o["omega"], generator=g)
        with Timer() as te:
            x = peer.sample(base, o["n_eval"], aux, o["omega"], generator=g).double().numpy()
            y = target.sample(o["n_eval"], streams.keys("eval-real", t))[0].double().numpy()
            n = len(x)
            ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), ot.dist(x, y), numItermax=10_000_000)
        for k, tm in (("train", tt), ("synth", ts), ("eval", te)):
            seconds[k] += tm.cpu
    return seconds


SHARED = dict(seeds=64, threads=1, repeats=3, learner=DEFAULT_LEARNER)
TINY = dict(seeds=2, peer_seeds=1, epochs=1, aux_epochs=1, n_eval=50, repeats=1)


def arguments(ap) -> None:
    ap.add_argument("--peer-seeds", type=int, default=4,
                    help="seeds run one at a time (their per-seed cost is what is compared)")
    ap.add_argument("--gens", type=int, default=2, help="generations (both sides)")
    ap.add_argument("--epochs", type=float, default=10, help="base epochs (default experiment: 100)")
    ap.add_argument("--aux-epochs", type=float, default=5, help="SIMS fine-tune epochs (default: 50)")
    ap.add_argument("--n-eval", type=int, default=1000, help="evaluation points per seed")
    ap.add_argument("--batch-size", type=int, default=DDPMConfig.batch_size,
                    help="minibatch (default: the calibrated full batch; 64 = the earlier default)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the learner's)")


def run(args) -> None:
    cfg = RunConfig.from_flat(seeds=args.seeds, gens=args.gens, epochs=args.epochs,
                              aux_epochs=args.aux_epochs, n_eval=args.n_eval, metric=["w2"],
                              batch_size=args.batch_size, lr=args.lr, learner=args.learner).validate()
    o = cfg.flat()
    print(f"experiment: loop={o['loop']} algo={o['algo']} omega={o['omega']} |D_r|={o['n_real']} "
          f"|D_s|={o['n_synth']} n_s={o['n_aux']} epochs={o['epochs']} aux_epochs={o['aux_epochs']} "
          f"gens={o['gens']} n_eval={o['n_eval']} T={o['T']} width={o['width']} depth={o['depth']} "
          f"batch={o['batch_size']}")

    with Timer() as tv:
        frame = run_config(cfg)
    phases = {k: frame.drop_duplicates(["generation"])[f"time_{k}_s"].sum()
              for k in ("train", "synth", "eval")}
    vec_sg = args.seeds * args.gens
    print(f"vectorized  N={args.seeds}: {vec_sg / tv.wall:8.3f} seed-gen/s wall, "
          f"{vec_sg / tv.cpu:8.3f} seed-gen/s CPU   "
          f"(per seed-gen: {tv.cpu / vec_sg:.3f} CPU s; train {phases['train'] / vec_sg:.3f}, "
          f"synth {phases['synth'] / vec_sg:.3f}, eval {phases['eval'] / vec_sg:.3f} wall s)")

    peer_cfg = copy.copy(cfg)
    with Timer() as tp:
        parts = [peer_run(peer_cfg, 1000 + k) for k in range(args.peer_seeds)]
    per_sg = {k: sum(p[k] for p in parts) / (args.peer_seeds * args.gens) for k in parts[0]}
    peer_sg = args.peer_seeds * args.gens
    print(f"one at a time ({args.peer_seeds} seeds): {peer_sg / tp.wall:8.3f} seed-gen/s wall, "
          f"{peer_sg / tp.cpu:8.3f} seed-gen/s CPU   (per seed-gen: {tp.cpu / peer_sg:.3f} CPU s; "
          f"train {per_sg['train']:.3f}, synth {per_sg['synth']:.3f}, eval {per_sg['eval']:.3f})")
    print(f"RATIO vectorized / one-at-a-time: {(vec_sg / tv.wall) / (peer_sg / tp.wall):.1f}x wall, "
          f"{(vec_sg / tv.cpu) / (peer_sg / tp.cpu):.1f}x CPU time")

    # The ceiling: what any implementation on this core would cost at 100 % of the matmul peak.
    fwd = forward_flops(ToyDDPM(cfg.ddpm()))
    train_rows = o["epochs"] * (o["n_real"] + o["n_synth"]) + (o["aux_epochs"] * o["n_aux"]
                                                            if o["algo"] != "standard" else 0)
    guided = 2 if o["algo"] != "standard" else 1
    sample_rows = o["T"] * ((o["n_aux"] if o["algo"] != "standard" else 0)
                           + guided * (o["n_synth"] + o["n_eval"]))
    flops = 3 * fwd * train_rows + fwd * sample_rows
    peak = matmul_peak("cpu", repeats=args.repeats)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(o["n_eval"], 2, generator=g), torch.randn(o["n_eval"], 2, generator=g)
    _, ot_cpu = best_of(lambda: w2(x, y), args.repeats)
    floor = flops / peak + ot_cpu
    peer_cost = tp.cpu / peer_sg
    print(f"CEILING: a seed-generation is {flops / 1e9:.1f} GFLOP of matrix products (steady state, "
          f"|D| = {o['n_real'] + o['n_synth']}); at the matmul peak ({peak / 1e9:.0f} GFLOP/s, one core) "
          f"that is {flops / peak:.3f} CPU s, plus {ot_cpu:.3f} s of exact W2 = {floor:.3f} s: no "
          f"implementation can beat one-at-a-time by more than {peer_cost / floor:.1f}x here "
          f"({peer_cost / (flops / peak):.1f}x with free OT); measured {peer_cost / (tv.cpu / vec_sg):.1f}x")
