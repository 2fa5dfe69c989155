"""The benchmark harness: `python -m benchmarks NAME [options]` (`python -m benchmarks` lists them).

A benchmark is a module of this package that the harness finds by its NAME (`BENCHMARKS`) and
that defines
  SHARED          the shared arguments it takes, with its defaults: any of seeds, threads,
                  repeats, device, learner (below)
  TINY            its smallest size, as argument values: `--tiny` (a smoke run of seconds to a
                  minute; options given on the command line still win)
  arguments(ap)   its own options (optional)
  check(args, error)  checks its arguments, error(message) for a one-line usage error (optional)
  run(args)       the measurement; prints its figures; returns an exit code (None: 0)
  PASS_ON = True  options it does not know go on to the command it times (args.extra)
The shared arguments mean the same in every benchmark:
  --seeds N[,N...]  seeds vectorized in one process (a list where a benchmark compares sizes)
  --threads T       torch threads of this process (default 1: the house rule, numbers per core)
  --repeats R       rounds or repeats of each measurement; the best one is kept
  --device D        cpu, cuda or cuda:N
  --learner NAME    the toy DDPM's learner (toy/config.py)
and every benchmark prints the machine stamp first (`stamp`: CPU model, cores, Python, torch and
its threads, GPU, load, commit). Speed claims compare ratios measured side by side in one run
(DESIGN.md): `best_interleaved` runs the variants in turn, round after round.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import platform
import resource
import sys
import textwrap
import time
from pathlib import Path

# NAME: what it measures is its module docstring's first line (`python -m benchmarks`)
BENCHMARKS = ("throughput", "flops", "blocks", "scaling", "breakdown", "profile_step", "learners",
              "ot_solvers", "run_cores", "cli_start", "ab_run", "gpu_paper_scale", "gpu_check",
              "gpu_edm_digits", "gpu_images")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TINY_RUN = ["--epochs", "1", "--aux-epochs", "1", "--n-aux", "50", "--n-eval", "50"]  # `madlab run`, --tiny
SHARED_HELP = {
    "seeds": "seeds vectorized in one process (N, or N,N,... where sizes are compared)",
    "threads": "torch threads of this process (numbers are per core at 1)",
    "repeats": "rounds or repeats of each measurement; the best is kept",
    "device": "cpu, cuda or cuda:N",
    "learner": "the toy DDPM's learner (toy/config.py)",
}


# ----------------------------------------------------------------------------- the machine stamp
def stamp(device: str = "cpu") -> str:
    """One line: CPU model, cores (usable / all), Python, torch and its threads, the GPU, the load
    while we measure, and the commit (loops/native.py reads the CPU model, madlab/provenance.py
    the GPU's name and git)."""
    import torch

    from loops.native import cpu_model
    from madlab.cores import usable_cores
    from madlab.provenance import device_name, git_state

    git = git_state()
    commit = "no git checkout" if git is None else git["commit"][:10] + (
        " with uncommitted changes" if git["dirty"] else "")
    gpu = f", GPU {device_name(device)}" if str(device).startswith("cuda") else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {cpu_model() or 'unknown CPU'}, {usable_cores()} of "
            f"{os.cpu_count()} cores usable, python {platform.python_version()}, torch "
            f"{torch.__version__}, torch threads={torch.get_num_threads()}{gpu}, load average "
            f"{load:.1f}; commit {commit}")


# ----------------------------------------------------------------------------- timers
class Timer:
    """Wall time and this process's CPU time of a block. On a shared machine the CPU time of a
    one-thread process is the steadier measure of its cost; both are printed."""

    def __enter__(self):
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


def best_of(fn, repeats: int = 3) -> tuple[float, float]:
    """(min wall s, min CPU s) of fn() over repeats."""
    walls, cpus = [], []
    for _ in range(repeats):
        with Timer() as t:
            fn()
        walls.append(t.wall)
        cpus.append(t.cpu)
    return min(walls), min(cpus)


def best_interleaved(fns: dict, rounds: int) -> dict:
    """{name: min CPU s of fn()} with the functions run in turn, round after round, so that a
    shared machine's slow spells hit every variant alike (side-by-side comparisons)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            with Timer() as t:
                fn()
            best[name] = min(best[name], t.cpu)
    return best


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sync(device) -> None:
    if str(device).startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def counts(text: str) -> list[int]:
    """'16,64' -> [16, 64]; '' -> [] (argparse type of --seeds and the other size lists)."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}")


# ----------------------------------------------------------------------------- the command
def about(name: str) -> str:
    """What a benchmark measures: its docstring's first paragraph, read without importing it."""
    path = HERE / f"{name}.py"
    path = path if path.exists() else HERE / name / "__init__.py"
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return " ".join(doc.split("\n\n")[0].split())


def parser(name: str, module) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks {name}", description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for key, default in getattr(module, "SHARED", {}).items():
        if key not in SHARED_HELP:
            raise ValueError(f"benchmark {name}: unknown shared argument {key!r}")
        # a list default: the benchmark compares several sizes (N,N,...); else one number
        kind = counts if isinstance(default, list) else str if key in ("device", "learner") else int
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        ap.add_argument(f"--{key}", type=kind, default=default,
                        help=f"{SHARED_HELP[key]} (default: {shown})")
    ap.add_argument("--tiny", action="store_true", help="the smallest size: a smoke run")
    if hasattr(module, "arguments"):
        module.arguments(ap)
    return ap


def parse(name: str, argv: list[str]):
    """The arguments of benchmark `name` (--tiny's sizes as defaults), checked."""
    module = importlib.import_module(f"benchmarks.{name}")
    ap = parser(name, module)
    if "--tiny" in argv:
        ap.set_defaults(**getattr(module, "TINY", {}))
    if getattr(module, "PASS_ON", False):
        args, args_extra = ap.parse_known_args(argv)
        args.extra = args_extra
    else:
        args = ap.parse_args(argv)
    if hasattr(module, "check"):
        module.check(args, ap.error)
    return module, args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n")[0] + "\n")
        for name in BENCHMARKS:
            print(textwrap.fill(about(name), 100, initial_indent=f"  {name:<16} ",
                                subsequent_indent=" " * 19))
        print("\n`python -m benchmarks NAME --help`: its options; `--tiny`: its smallest size.")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    module, args = parse(name, rest)
    if getattr(args, "threads", None):
        import torch
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
        torch.set_num_threads(args.threads)
    print(stamp(getattr(args, "device", "cpu")), flush=True)
    return module.run(args) or 0
