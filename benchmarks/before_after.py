"""Before/after: the first committed toy DDPM (autograd, torch.optim.Adam over all seeds at once)
vs the current one with torch ops only (hand-written backward, fused Adam, cache-sized blocks) vs
the current one with the fused C row kernels; training step and guided sampling, side by side in
one process, all at the current default batch size and learning rate.

The "before" module is read from git (`git show BASE:toy/ddpm.py`), so this needs the repository.

    nice -n 5 python -m benchmarks.before_after --seeds 64
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import best_of, machine, one_thread
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM

BASE = "9498e63"  # the core engine commit


def load_before(rev: str):
    src = subprocess.run(["git", "show", f"{rev}:toy/ddpm.py"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    path = Path(tempfile.mkdtemp()) / "ddpm_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("ddpm_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ddpm_before"] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=10, help="epochs over |D| = 1250 timed")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--rev", default=BASE, help="git revision of the 'before' toy/ddpm.py")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    before = load_before(args.rev)
    s = SeedStreams(range(args.seeds))
    now = DDPMConfig()
    same = dict(batch_size=now.batch_size, lr=now.lr)  # the "before" defaults were batch 64, lr 1e-3
    variants = (("before", before.ToyDDPM(before.DDPMConfig(**same))),
                ("torch ops", ToyDDPM(DDPMConfig(kernels="torch"))),
                ("fused", ToyDDPM(DDPMConfig(kernels="fused"))))
    model = variants[-1][1].init(s.generators("init"))
    data = torch.randn(args.seeds, 1250, 2)
    guide = copy.deepcopy(model)
    steps = args.epochs * math.ceil(1250 / min(now.batch_size, 1250))
    rows = []
    for name, b in variants:
        b.train(model, data, 1, s.generators("train"))
        _, train_cpu = best_of(lambda: b.train(model, data, args.epochs, s.generators("train")), 2)
        _, sample_cpu = best_of(lambda: b.sample(model, args.n_sample, s.generators("eval"),
                                                 guide=guide, omega=3.0), 2)
        rows.append((name, train_cpu, sample_cpu))
        print(f"{name:>9}: train {train_cpu / steps / args.seeds * 1e6:8.0f} us CPU per seed-step "
              f"(batch {min(now.batch_size, 1250)}); guided sampling "
              f"{sample_cpu / args.n_sample / args.seeds * 1e6:8.1f} us CPU per seed-point", flush=True)
    for (a, ta, sa), (b, tb, sb) in ((rows[0], rows[2]), (rows[1], rows[2]), (rows[0], rows[1])):
        print(f"RATIO {a} / {b} (N={args.seeds}): training {ta / tb:.2f}x, sampling {sa / sb:.2f}x")


if __name__ == "__main__":
    main()
