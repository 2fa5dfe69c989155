"""torch.profiler table of the toy DDPM's training and guided sampling, on torch ops only
("torch") or with the fused C kernels ("fused"; their time shows as the gap between the listed
operators and the total; ReLU learners only).

    nice -n 5 python -m benchmarks profile_step --kernels torch --seeds 16
    nice -n 5 python -m benchmarks profile_step --kernels fused --seeds 16 --learner resmlp-sin
"""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

from loops.rng import SeedStreams
from toy.config import DEFAULT_LEARNER
from toy.ddpm import DDPMConfig, ToyDDPM

SHARED = dict(seeds=64, threads=1, learner=DEFAULT_LEARNER)
TINY = dict(seeds=2, epochs=1, n_sample=20, rows=5)


def arguments(ap) -> None:
    ap.add_argument("--kernels", choices=("torch", "fused", "compile"), default="torch")
    ap.add_argument("--epochs", type=float, default=10)
    ap.add_argument("--n-sample", type=int, default=250)
    ap.add_argument("--rows", type=int, default=15, help="operators listed")


def run(args) -> None:
    b = ToyDDPM(DDPMConfig(learner=args.learner, kernels=args.kernels))
    s = SeedStreams(range(args.seeds))
    model = b.init(s.keys("init"))
    data = torch.randn(args.seeds, 1250, 2)
    b.train(model, data, 1, s.keys("train"))
    for name, fn in (("train", lambda: b.train(model, data, args.epochs, s.keys("train"))),
                     ("guided sampling", lambda: b.sample(model, args.n_sample, s.keys("eval"),
                                                          guide=model, omega=3.0))):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"--- {args.learner} on {args.kernels}: {name}, N={args.seeds}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
