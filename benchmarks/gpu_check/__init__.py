"""The prepared GPU check (issue 12, item 4): one command, at most 8 minutes on one H200, leaving a
summary under --out that survives a part that breaks or runs out of time.

The lead's command. The device machine has no network and lacks POT and torch-linear-assignment,
so they travel as wheels; madlab runs from the checkout (`pip install -e .` would need PyPI).
The device tool sends the lead's checkout, so merge this branch first. Then:

    bash benchmarks/gpu_wheels.sh        # HERE, once, in the repository root: .whl/ (1.6 MB)

and the device tool's `run` with carry [".whl"] and timeout_s 560:

    bash benchmarks/gpu_check.sh

(gpu_check.sh is, written out: `python3 -m pip install -q --no-index --no-deps --no-compile
--no-cache-dir --upgrade --target /tmp/site .whl/*.whl; export PYTHONPATH=$PWD:/tmp/site
PYTHONUNBUFFERED=1; python3 -m benchmarks gpu_check --out $OUT`; extra arguments are passed on,
e.g. `bash benchmarks/gpu_check.sh --parts b,d --variants auto,compile`.) The default budget
is 470 s of parts plus start-up: within a 560 s command, inside the 15 device-minutes of a task
with the machine's start. What comes back: OUT/summary.md (printed last, so the tool's output
tail shows it), OUT/summary.json, OUT/gpu_check.log, OUT/tracebacks.txt (if a part broke) and the
results tables toy_rows / agreement_rows / edm_rows (.parquet): 7 files, under the tool's 8.

Parts, each in its own process under its own time budget; a part's result (or its error: one line
here, the traceback in tracebacks.txt) is written to summary.json / summary.md as soon as it is
known, and a part's partial results as they come, so a part that breaks or times out leaves the
others' and its own so far:

  e  the machine and the commit: GPU, driver, torch / CUDA versions, CPU cores, packages present
  a  the CUDA tests: `pytest -m cuda` over the test files that have such tests
  d  CPU against CUDA at the science level: the default experiment, 64 seeds x 3 generations on
     both devices; per generation, the medians over seeds of W2 and fd must agree within a band
     from their bootstrap standard errors; and the Philox streams' bits must be equal
  b  the toy DDPM at 1000 seeds x 3 generations of the default experiment (augment, SIMS w = 3,
     |D_s| = 250, exact W2 by the device auction, and fd) through madlab.runner.run_config:
     seed-generations/s (steady = generations 2.., generation 1 reported apart), phase times,
     peak GPU memory, the figure5-paper wall time extrapolated; OT solvers at 1000 seeds (auction
     on the device, POT on the host's cores, torch-linear-assignment); `--variants` runs the
     same experiment per step implementation (MADLAB_KERNELS values) side by side
  c  an EDM digits loop (--backend edm): 2 generations, SIMS guidance, FID with classifier
     features, medium net: training and sampling images/s, FID per generation

    python -m benchmarks gpu_check --out /tmp/gc --tiny --device cpu   # every part, toy size, CPU
    python -m benchmarks gpu_check --out /tmp/gc --parts b --variants auto,compile   # (item 3)

The code: this file is the command (its options); check.py the harness (the parent that runs each
part in its own process under its budget, and the child side); report.py what a part reports;
timing.py what the parts share (call ledgers, synchronised phase clocks, the default experiment);
one module per part (check.PARTS). Part b's figure5-paper extrapolation is madlab/plan.py's cost
model (`extrapolate_figure5`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.gpu_check.check import DEFAULT_BUDGET, PARTS, Check, child

SHARED = dict(seeds=1000, device="cuda")   # seeds: part b's
TINY = dict(seeds=8, gens=2)


def arguments(ap) -> None:
    ap.add_argument("--out", help="output folder (summary.json, summary.md, log, tables)")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET,
                    help="seconds for all parts together (default 470: the check ends within 8 minutes)")
    ap.add_argument("--parts", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    ap.add_argument("--gens", type=int, default=3, help="part b: generations (tiny 2)")
    ap.add_argument("--variants", default="auto", help=(
        "part b: step implementations to run side by side, MADLAB_KERNELS values, the first is the "
        "main run (e.g. auto,compile,graph; a value toy/ddpm.py does not know is reported as not "
        "implemented)"))
    ap.add_argument("--edm-net", default="medium", help="part c: U-Net size (default medium)")
    ap.add_argument("--commit", default="", help="the commit, where .git does not travel")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--plant", default="", help=argparse.SUPPRESS)  # tests: a:error,c:hang


def check(args, error) -> None:
    if not args.out:
        error("--out DIR is required")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        error(f"unknown parts {unknown}; choose from {','.join(sorted(PARTS))}")
    if args.budget_s <= 0:
        error("--budget-s must be positive")
    args.parts = parts
    args.out = Path(args.out)
    args.passthrough = ["--out", str(args.out), "--device", args.device, "--seeds", str(args.seeds),
                        "--gens", str(args.gens), "--variants", args.variants, "--edm-net", args.edm_net,
                        "--commit", args.commit, "--plant", args.plant] + (["--tiny"] if args.tiny else [])


def parse(argv: list[str]):
    """The check's arguments (the tests call it)."""
    from benchmarks.harness import parse as parse_benchmark
    return parse_benchmark("gpu_check", argv)[1]


def run(args) -> int:
    if args.child:
        return child(args)
    return Check(args).run()
