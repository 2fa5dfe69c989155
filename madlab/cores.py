"""How many processes and threads a command uses: one process per usable core, one thread each.

The usable cores are the process's CPU affinity (`os.sched_getaffinity`: what taskset, cgroups-
aware launchers and Slurm's --cpus-per-task leave to it), not the machine's count. Seeds split into
chunks run as separate processes, one torch thread each (exact OT included: it runs in the
process's torch threads), so processes x threads never exceeds the cores: measured 5.6-10x faster
than one process with N threads on a busy 2-core machine (benchmarks/sweep_threads.sh). A GPU run
is one process that drives the device, with every core as its host threads.
"""
from __future__ import annotations

import math
import os


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # macOS and other systems without affinity
        return max(1, os.cpu_count() or 1)


def layout(seeds: int, jobs: int | None, device: str = "cpu") -> tuple[int, int, int]:
    """(processes, torch threads per process, seeds per chunk) for `seeds` seeds and at most
    `jobs` processes (None: the usable cores). One process on a GPU; never more processes than
    seeds; threads = cores // processes, at least one."""
    cores = usable_cores()
    jobs = cores if jobs is None else jobs
    if str(device).startswith("cuda"):
        jobs = 1
    processes = max(1, min(jobs, seeds))
    return processes, max(1, cores // processes), math.ceil(seeds / processes)
