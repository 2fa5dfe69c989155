"""(b) Achieved FLOP/s of the toy DDPM's training step and sampling vs a large matmul (peak).

FLOPs counted are the matrix products only (2 m k n each; a training step = 3x the forward:
forward, input gradient, weight gradient), so the fraction of peak is a lower bound. The default
toy DDPM (full batch: one step per epoch over |D| = 1250 points) is timed with the fused CPU
kernels and with torch ops only, side by side, and against the peers' per-seed nn.Module.

    nice -n 5 python -m benchmarks flops --seeds 64
"""
from __future__ import annotations

import copy
import math

import torch

from benchmarks import peer
from benchmarks.harness import best_of, sync
from loops.rng import SeedStreams
from toy.config import DEFAULT_LEARNER
from toy.ddpm import DDPMConfig, ToyDDPM


def forward_flops(b: ToyDDPM) -> int:
    """Matmul FLOPs of eps_theta for one point of one seed. The time input's product is counted
    per point: right for training; in sampling the fused kernels form it once per seed and step,
    so for the sinusoidal input (16 features, the default learner) sampling FLOP/s are overstated."""
    c, d, e, w = b.config, b.dim, b.embed_dim, b.config.width
    return 2 * ((d + e) * w + c.depth * ((w + e) * w + w * w) + w * d)


def matmul_peak(device: str, n: int = 2048, repeats: int = 5,
                dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of an n x n matmul in `dtype` on `device`, best of `repeats` (CPU time on the CPU)."""
    a, m = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    a @ m
    sync(device)
    wall, cpu = best_of(lambda: (a @ m, sync(device)), repeats)
    return 2 * n ** 3 / (cpu if device == "cpu" else wall)


SHARED = dict(seeds=64, threads=1, repeats=3, device="cpu", learner=DEFAULT_LEARNER)
TINY = dict(seeds=2, epochs=1, n_sample=20, repeats=1)


def arguments(ap) -> None:
    ap.add_argument("--epochs", type=float, default=10, help="epochs timed (over |D| = 1250)")
    ap.add_argument("--n-sample", type=int, default=1000, help="points sampled per seed")


def run(args) -> None:
    dev = args.device
    clock = "CPU" if dev == "cpu" else "wall"
    peak_before = matmul_peak(dev, repeats=args.repeats)
    rows = []  # (what, FLOPs, seconds, note): fractions use the best peak, measured before and after

    paths = {"fused kernels": "fused", "torch ops": "torch"} if dev == "cpu" else {"torch ops": None}
    if DDPMConfig(learner=args.learner).validate().activation != "relu":
        del paths["fused kernels"]
        print(f"{args.learner}: no fused kernels (ReLU learners only), torch ops alone")
    for label, kernels in paths.items():
        b = ToyDDPM(DDPMConfig(learner=args.learner, device=dev, kernels=kernels))
        streams = SeedStreams(range(args.seeds), device=dev)
        model = b.init(streams.keys("init"))
        data = torch.randn(args.seeds, 1250, 2, device=dev)
        batch = min(b.config.batch_size, 1250)
        steps = round(args.epochs * math.ceil(1250 / batch))
        fwd = forward_flops(b)
        b.train(model, data, 1, streams.keys("train"))
        wall, cpu = best_of(lambda: (b.train(model, data, args.epochs, streams.keys("train")),
                                     sync(dev)), args.repeats)
        t = cpu if dev == "cpu" else wall
        rows.append((f"training step, {label} (N={args.seeds}, batch {batch}, whole train() incl. "
                     f"data prep)", 3 * fwd * batch * args.seeds * steps, t,
                     f"{t / steps / args.seeds * 1e6:.0f} us per seed-step"))
        guide = copy.deepcopy(model)
        wall, cpu = best_of(lambda: (b.sample(model, args.n_sample, streams.keys("eval"),
                                              guide=guide, omega=3.0), sync(dev)), args.repeats)
        t = cpu if dev == "cpu" else wall
        rows.append((f"sampling, {label} (N={args.seeds} x {args.n_sample} points, SIMS-guided, "
                     f"T={b.config.T})", fwd * 2 * b.config.T * args.n_sample * args.seeds, t,
                     f"{t / args.n_sample / args.seeds * 1e6:.1f} us per seed-point"))

    if dev == "cpu":  # the peers' per-seed module, for reference
        net = peer.EpsNet(b)
        x = torch.randn(1250, 2)
        wall, cpu = best_of(lambda: peer.train(net, x, args.epochs), args.repeats)
        rows.append(("peer training step (one nn.Module, autograd, torch.optim.Adam)",
                     3 * fwd * batch * steps, cpu, f"{cpu / steps * 1e6:.0f} us per seed-step"))
        g2 = copy.deepcopy(net)
        wall, cpu = best_of(lambda: peer.sample(net, args.n_sample, g2, 3.0), args.repeats)
        rows.append((f"peer sampling ({args.n_sample} points, guided)",
                     fwd * 2 * b.config.T * args.n_sample, cpu,
                     f"{cpu / args.n_sample * 1e6:.1f} us per seed-point"))

    peak_after = matmul_peak(dev, repeats=args.repeats)
    peak = max(peak_before, peak_after)
    print(f"large matmul 2048x2048 fp32: {peak / 1e9:7.1f} GFLOP/s ({clock} time) = peak "
          f"(best of before {peak_before / 1e9:.1f} and after {peak_after / 1e9:.1f})")
    for what, flops, t, note in rows:
        print(f"{what}: {flops / t / 1e9:7.1f} GFLOP/s = {flops / t / peak:5.1%} of peak  ({note})")
