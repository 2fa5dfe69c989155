"""Shared benchmark helpers: the machine's description, timers (wall and CPU), peak memory."""
from __future__ import annotations

import os
import platform
import resource
import time

import torch

from loops.native import cpu_model


def one_thread() -> None:
    """The house rule: one torch thread per process (the numbers below are per core)."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def machine() -> str:
    """nproc, CPU model, torch version and threads, and the load while we measure."""
    model = cpu_model() or "unknown CPU"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = ""
    if torch.cuda.is_available():
        gpu = f"; GPU {torch.cuda.get_device_name()}"
    return (f"machine: nproc={os.cpu_count()}, {model}, python {platform.python_version()}, "
            f"torch {torch.__version__}, torch threads={torch.get_num_threads()}{gpu}, "
            f"load average {load:.1f}")


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


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
