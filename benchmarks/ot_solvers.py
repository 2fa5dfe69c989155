"""Exact W2 per seed, side by side: POT, scipy, the batched torch auction, torch-linear-assignment.

Model-like samples: x = the paper's Gaussian with 1 % of its points at radius 100..1000 (the
far tail the toy DDPM produces), y = a clean sample of it; n = 1000 points, d = 2. Per solver:
seconds per seed (CPU time and wall, best of --rounds, solvers interleaved), and the largest
relative difference of W2^2 from POT's. POT and scipy solve seed after seed on the host, one
thread (as `madlab sweep` tasks do); the auction solves all N seeds in one call on --device;
torch-linear-assignment (if importable: `pip install torch-linear-assignment`) solves the batch
with scipy on a CPU and with its Triton kernel on a CUDA device (compute capability >= 8.0).

    nice -n 5 python -m benchmarks ot_solvers --seeds 16,64
    python -m benchmarks ot_solvers --device cuda --seeds 64,1000   # on a GPU machine
"""
from __future__ import annotations

import math

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment

import analysis.assignment as assignment
from analysis.assignment import sq_euclidean
from analysis.distances import wasserstein_batch
from benchmarks.harness import Timer, sync

SHARED = dict(seeds=[16, 64], threads=1, repeats=2, device="cpu")
TINY = dict(seeds=[2], n=100, repeats=1)


def model_like(N: int, n: int, far: float = 0.01, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    x = torch.randn(N, n, 2, generator=g, dtype=torch.float64) @ L.T
    y = torch.randn(N, n, 2, generator=g, dtype=torch.float64) @ L.T
    k = round(far * n)
    r = torch.exp(math.log(100) + math.log(10) * torch.rand(N, k, generator=g, dtype=torch.float64))
    a = 2 * math.pi * torch.rand(N, k, generator=g, dtype=torch.float64)
    x[:, :k] = torch.stack([r * a.cos(), r * a.sin()], -1)
    return x.float(), y.float()


def pot(x, y):
    out = []
    for a, b in zip(x.double().numpy(), y.double().numpy()):
        n = len(a)
        w = np.full(n, 1 / n)
        out.append(ot.emd2(w, w, ot.dist(a, b), numItermax=10**7))
    return torch.tensor(out, dtype=torch.float64)


def scipy_lsa(x, y):
    out = []
    for a, b in zip(x.double().numpy(), y.double().numpy()):
        M = ot.dist(a, b)
        rows, cols = linear_sum_assignment(M)
        out.append(M[rows, cols].mean())
    return torch.tensor(out, dtype=torch.float64)


def auction(x, y):
    return wasserstein_batch(x, y) ** 2


def tla(x, y):
    from torch_linear_assignment import batch_linear_assignment
    C = sq_euclidean(x, y)
    col = batch_linear_assignment(C)
    return C.gather(2, col[..., None]).mean((1, 2)).cpu()


def rounds_of_auction(x, y) -> int:
    """Bidding rounds of one batched call: the sequential steps that a GPU pays in launches."""
    count = 0
    bid = assignment._Auction.bid

    def counting(self, free):
        nonlocal count
        count += 1
        return bid(self, free)

    assignment._Auction.bid = counting
    try:
        wasserstein_batch(x, y)
    finally:
        assignment._Auction.bid = bid
    return count


def arguments(ap) -> None:
    ap.add_argument("--n", type=int, default=1000, help="points per sample")
    ap.add_argument("--host-seeds", type=int, default=64,
                    help="at most this many seeds timed on the host solvers (per seed cost)")


def run(args) -> None:
    try:
        import torch_linear_assignment  # noqa: F401
        have_tla = True
    except ImportError:
        have_tla = False
        print("torch-linear-assignment: not importable, skipped")
    dev = torch.device(args.device)
    for N in args.seeds:
        x, y = model_like(N, args.n)
        xd, yd = x.to(dev), y.to(dev)
        h = min(N, args.host_seeds)
        solvers = {"POT ot.emd2 (host, per seed)": (lambda: pot(x[:h], y[:h]), h),
                   "scipy linear_sum_assignment (host, per seed)": (lambda: scipy_lsa(x[:h], y[:h]), h),
                   f"auction, batched ({args.device})": (lambda: auction(xd, yd), N)}
        if have_tla:
            solvers[f"torch-linear-assignment ({args.device})"] = (lambda: tla(xd, yd), N)
        best = {k: (math.inf, math.inf, None) for k in solvers}
        for _ in range(args.repeats):
            for name, (fn, seeds) in solvers.items():
                sync(args.device)
                with Timer() as t:
                    value = fn()
                    sync(args.device)
                cpu, wall, _ = best[name]
                best[name] = (min(cpu, t.cpu / seeds), min(wall, t.wall / seeds), value)
        ref = best["POT ot.emd2 (host, per seed)"][2]
        print(f"\nN = {N} seeds x n = {args.n} points, d = 2, 1 % far tail; s per seed:")
        print(f"{'solver':<48} {'CPU s':>8} {'wall s':>8}   max |rel diff| from POT")
        for name, (cpu, wall, value) in best.items():
            rel = ((value[:h] - ref) / ref).abs().max().item()
            print(f"{name:<48} {cpu:8.4f} {wall:8.4f}   {rel:.1e}")
        print(f"auction: {rounds_of_auction(xd, yd)} bidding rounds for the batch")
