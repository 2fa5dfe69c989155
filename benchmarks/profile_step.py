"""torch.profiler table of the toy DDPM's training and guided sampling: the first commit
("before"), the current code on torch ops only ("torch"), or with the fused C kernels ("fused";
their time shows as the gap between the listed operators and the total).

    nice -n 5 python -m benchmarks.profile_step --which torch --seeds 16
    nice -n 5 python -m benchmarks.profile_step --which fused --seeds 16
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.before_after import BASE, load_before
from benchmarks.common import machine, one_thread
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", choices=("before", "torch", "fused"), default="fused")
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=10)
    ap.add_argument("--n-sample", type=int, default=250)
    ap.add_argument("--rows", type=int, default=15, help="operators listed")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    now = DDPMConfig().validate()   # the default learner's batch and lr
    if args.which == "before":
        mod = load_before(BASE)
        b = mod.ToyDDPM(mod.DDPMConfig(batch_size=now.batch_size, lr=now.lr))
    else:
        b = ToyDDPM(DDPMConfig(kernels=args.which))
    s = SeedStreams(range(args.seeds))
    model = b.init(s.keys("init"))
    data = torch.randn(args.seeds, 1250, 2)
    b.train(model, data, 1, s.keys("train"))
    for name, fn in (("train", lambda: b.train(model, data, args.epochs, s.keys("train"))),
                     ("guided sampling", lambda: b.sample(model, args.n_sample, s.keys("eval"),
                                                          guide=model, omega=3.0))):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"--- {args.which}: {name}, N={args.seeds}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
