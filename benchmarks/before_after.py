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
from typing import Callable

import torch

from benchmarks.common import best_of, machine, one_thread
from loops import rng
from loops.rng import SeedStreams
from toy.ddpm import DDPMConfig, ToyDDPM

BASE = "9498e63"  # the core engine commit


def _load(rev: str, path: str, name: str, replace: tuple[str, str] | None = None):
    src = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    if replace:
        src = src.replace(*replace)
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_before(rev: str):
    """toy/ddpm.py at `rev`, drawing from loops/rng.py at `rev` (its `rng` attribute): an old
    module gets the per-seed torch.Generator streams it was written for."""
    tag = rev.replace("~", "_").replace("^", "_").replace("/", "_")
    rng = _load(rev, "loops/rng.py", f"rng_before_{tag}")
    module = _load(rev, "toy/ddpm.py", f"ddpm_before_{tag}",
                   ("from loops.rng import", f"from rng_before_{tag} import"))
    module.rng = rng
    return module


def streams_of(module, seeds) -> "Callable":
    """purpose, generation -> what `module`'s backend takes: StreamKeys, or (before the counter-based
    streams) a list of torch.Generators. A module from `load_before` brings its own loops/rng.py;
    any other (the working tree's) uses the working tree's."""
    s = getattr(module, "rng", rng).SeedStreams(seeds)
    return s.keys if hasattr(s, "keys") else s.generators


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--epochs", type=float, default=10, help="epochs over |D| = 1250 timed")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--rev", default=BASE, help="git revision of the 'before' toy/ddpm.py")
    ap.add_argument("--learner", default="resmlp-ln", help=(
        "learner of the current variants (default resmlp-ln: the network the 'before' module "
        "has; resmlp-sin, today's default, has no LayerNorm)"))
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    before = load_before(args.rev)
    s = SeedStreams(range(args.seeds))
    now = DDPMConfig(learner=args.learner).validate()
    same = dict(batch_size=now.batch_size, lr=now.lr)  # the "before" defaults were batch 64, lr 1e-3
    old = streams_of(before, range(args.seeds))
    variants = (("before", before.ToyDDPM(before.DDPMConfig(**same)), old),
                ("torch ops", ToyDDPM(DDPMConfig(learner=args.learner, kernels="torch")), s.keys),
                ("fused", ToyDDPM(DDPMConfig(learner=args.learner, kernels="fused")), s.keys))
    model = variants[-1][1].init(s.keys("init"))
    data = torch.randn(args.seeds, 1250, 2)
    guide = copy.deepcopy(model)
    steps = args.epochs * math.ceil(1250 / min(now.batch_size, 1250))
    rows = []
    for name, b, keys in variants:
        b.train(model, data, 1, keys("train"))
        _, train_cpu = best_of(lambda: b.train(model, data, args.epochs, keys("train")), 2)
        _, sample_cpu = best_of(lambda: b.sample(model, args.n_sample, keys("eval"),
                                                 guide=guide, omega=3.0), 2)
        rows.append((name, train_cpu, sample_cpu))
        print(f"{name:>9}: train {train_cpu / steps / args.seeds * 1e6:8.0f} us CPU per seed-step "
              f"(batch {min(now.batch_size, 1250)}); guided sampling "
              f"{sample_cpu / args.n_sample / args.seeds * 1e6:8.1f} us CPU per seed-point", flush=True)
    for (a, ta, sa), (b, tb, sb) in ((rows[0], rows[2]), (rows[1], rows[2]), (rows[0], rows[1])):
        print(f"RATIO {a} / {b} (N={args.seeds}): training {ta / tb:.2f}x, sampling {sa / sb:.2f}x")


if __name__ == "__main__":
    main()
