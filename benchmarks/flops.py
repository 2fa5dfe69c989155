"""(b) Achieved FLOP/s of the toy DDPM's training step and sampling vs a large matmul (peak).

FLOPs counted are the matrix products only (2 m k n each; a training step = 3x the forward:
forward, input gradient, weight gradient), so the fraction of peak is a lower bound.

    nice -n 5 python -m benchmarks.flops --seeds 64
"""
from __future__ import annotations

import argparse
import copy

import torch

from benchmarks import peer
from benchmarks.common import best_of, machine, one_thread, sync
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM


def forward_flops(b: ToyDDPM) -> int:
    """Matmul FLOPs of eps_theta for one point of one seed."""
    c, d, e, w = b.config, b.dim, b.embed_dim, b.config.width
    return 2 * ((d + e) * w + c.depth * ((w + e) * w + w * w) + w * d)


def matmul_peak(device: str, n: int = 2048) -> float:
    a, m = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ m
    sync(device)
    wall, cpu = best_of(lambda: (a @ m, sync(device)), 5)
    return 2 * n ** 3 / (cpu if device == "cpu" else wall)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=64, help="N seeds trained/sampled together")
    ap.add_argument("--epochs", type=float, default=2, help="epochs timed (over |D| = 1250)")
    ap.add_argument("--n-sample", type=int, default=1000, help="points sampled per seed")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    dev = args.device
    clock = "CPU" if dev == "cpu" else "wall"
    peak = matmul_peak(dev)
    print(f"large matmul 2048x2048 fp32: {peak / 1e9:7.1f} GFLOP/s ({clock} time)  = peak")

    b = ToyDDPM(DDPMConfig(device=dev))
    streams = SeedStreams(range(args.seeds))
    model = b.init(streams.generators("init"))
    data = torch.randn(args.seeds, 1250, 2, device=dev)
    steps = round(args.epochs * 20)
    fwd = forward_flops(b)

    b.train(model, data, 0.2, streams.generators("train"))
    wall, cpu = best_of(lambda: (b.train(model, data, args.epochs, streams.generators("train")),
                                 sync(dev)))
    t = cpu if dev == "cpu" else wall
    flops = 3 * fwd * 64 * args.seeds * steps
    print(f"training step (N={args.seeds}, batch 64, whole train() incl. data prep): "
          f"{flops / t / 1e9:7.1f} GFLOP/s = {flops / t / peak:5.1%} of peak  "
          f"({t / steps / args.seeds * 1e6:.0f} us per seed-step)")

    guide = copy.deepcopy(model)
    wall, cpu = best_of(lambda: (b.sample(model, args.n_sample, streams.generators("eval"),
                                          guide=guide, omega=3.0), sync(dev)), 2)
    t = cpu if dev == "cpu" else wall
    flops = fwd * 2 * b.config.T * args.n_sample * args.seeds
    print(f"sampling (N={args.seeds} x {args.n_sample} points, SIMS-guided, T={b.config.T}): "
          f"{flops / t / 1e9:7.1f} GFLOP/s = {flops / t / peak:5.1%} of peak")

    if dev == "cpu":  # the peers' per-seed module, for reference
        net = peer.EpsNet(b)
        x = torch.randn(1250, 2)
        wall, cpu = best_of(lambda: peer.train(net, x, args.epochs))
        flops = 3 * fwd * 64 * steps
        print(f"peer training step (one nn.Module, autograd, torch.optim.Adam): "
              f"{flops / cpu / 1e9:7.1f} GFLOP/s = {flops / cpu / peak:5.1%} of peak  "
              f"({cpu / steps * 1e6:.0f} us per seed-step)")
        g2 = copy.deepcopy(net)
        wall, cpu = best_of(lambda: peer.sample(net, args.n_sample, g2, 3.0), 2)
        flops = fwd * 2 * b.config.T * args.n_sample
        print(f"peer sampling ({args.n_sample} points, guided): {flops / cpu / 1e9:7.1f} GFLOP/s "
              f"= {flops / cpu / peak:5.1%} of peak")


if __name__ == "__main__":
    main()
