"""GPU check of the image experiments: `images-self-improve` at a small size through `madlab experiment`.

    python -m benchmarks gpu_images                      # CUDA: medium U-Net on digits, a few minutes
    python -m benchmarks gpu_images --tiny               # CPU plumbing check (tiny U-Net, about a minute)

Runs the experiment command as a user would (so --device cuda goes through the same code), then
prints its wall time beside the CPU-rate prediction of --dry-run and the headline numbers; the
output folder (figure, tables, work folder) is kept under --out. Unmeasured on a GPU so far.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SHARED = dict(seeds=3, device="cuda")
TINY = dict(device="cpu")   # and a tiny U-Net, 2 Heun steps: a plumbing check


def arguments(parser) -> None:
    parser.add_argument("--out", default="gpu-images-check")


def run(args) -> int:
    net = ["edm.net=tiny", "edm.num_steps=2", "epochs=2", "n_eval=100"] if args.tiny else \
          ["edm.net=medium", "edm.num_steps=18", "epochs=200", "n_eval=1000", "budgets=5,10,20"]
    argv = [sys.executable, "-m", "madlab", "experiment", "images-self-improve", "--scale", "smoke",
            "--device", args.device, "--out", args.out, "--seeds", str(args.seeds), "--quiet"]
    for item in net:
        argv += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run(argv + ["--dry-run"], check=True, env=env)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env)
    print(f"images-self-improve on {args.device}: exit {done.returncode}, wall {time.perf_counter() - start:.1f} s")
    return done.returncode
