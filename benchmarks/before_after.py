"""Before/after: the first committed toy DDPM (autograd, torch.optim.Adam over all seeds at once)
vs the current one, training step and guided sampling, side by side in one process.

The "before" module is read from git (`git show BASE:toy/ddpm.py`), so this needs the repository.

    nice -n 5 python -m benchmarks.before_after --seeds 64
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
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
    ap.add_argument("--epochs", type=float, default=1, help="epochs over |D| = 1250 timed")
    ap.add_argument("--n-sample", type=int, default=250, help="points sampled per seed")
    ap.add_argument("--rev", default=BASE, help="git revision of the 'before' toy/ddpm.py")
    args = ap.parse_args(argv)
    one_thread()
    print(machine())
    before = load_before(args.rev)
    s = SeedStreams(range(args.seeds))
    old, new = before.ToyDDPM(before.DDPMConfig()), ToyDDPM(DDPMConfig())
    model = new.init(s.generators("init"))
    data = torch.randn(args.seeds, 1250, 2)
    guide = copy.deepcopy(model)
    rows = []
    for name, b in (("before", old), ("after", new)):
        b.train(model, data, 0.1, s.generators("train"))
        _, train_cpu = best_of(lambda: b.train(model, data, args.epochs, s.generators("train")), 2)
        _, sample_cpu = best_of(lambda: b.sample(model, args.n_sample, s.generators("eval"),
                                                 guide=guide, omega=3.0), 2)
        rows.append((name, train_cpu, sample_cpu))
        print(f"{name:>6}: train {train_cpu / (args.epochs * 20) / args.seeds * 1e6:8.0f} us CPU "
              f"per seed-step; guided sampling {sample_cpu / args.n_sample / args.seeds * 1e6:8.1f} "
              f"us CPU per seed-point", flush=True)
    print(f"RATIO before/after (N={args.seeds}): training {rows[0][1] / rows[1][1]:.1f}x, "
          f"sampling {rows[0][2] / rows[1][2]:.1f}x")


if __name__ == "__main__":
    main()
