"""How many processes and threads a command uses: one process per usable core, one thread each.

The usable cores are the process's CPU affinity (`os.sched_getaffinity`: what taskset, cgroups-
aware launchers and Slurm's --cpus-per-task leave to it), not the machine's count. `madlab run`
and `madlab experiment` split their seeds into one chunk per process (a seed's numbers do not
depend on the seeds beside it) and run the chunks side by side, one torch thread each, exact OT
included (it runs in the process's torch threads), so processes x threads never exceeds the cores.
Threads rarely pay on the CPU: torch's intra-op threads barely help the toy DDPM's small batched
products (2 threads: about 1.2x faster wall for 1.3-1.4x the CPU on an idle 2-core machine), and on
a busy one they cost far more than they give (a probe of 1 seed x 1 generation: 8.1 s with 2
threads, 1.3 s with 1, beside a running sweep; `python -m benchmarks run_cores`; N processes x 1
thread ran a sweep 5.6-10x faster than 1 process x N threads, `benchmarks/sweep_threads.sh` in
git history). A GPU run is one process that drives the device, with every usable
core as its host threads (random draws, exact OT on the host).
"""
from __future__ import annotations

import math
import os

from madlab.config import ConfigError


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # macOS and other systems without affinity
        return max(1, os.cpu_count() or 1)


def layout(seeds: int, jobs: int | None = None, device: str = "cpu",
           threads: int | None = None) -> tuple[int, int, int]:
    """(processes, torch threads per process, seeds per chunk) for `seeds` seeds.

    jobs:    most processes (None: the usable cores); never more processes than seeds. On a GPU
             always one process: it drives the device.
    threads: torch threads per process (None: 1 on the CPU, the usable cores on a GPU).
    """
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}")
    from madlab.limits import check_threads
    check_threads(threads)
    gpu = str(device).startswith("cuda")
    processes = 1 if gpu else max(1, min(usable_cores() if jobs is None else jobs, seeds))
    threads = threads or (usable_cores() if gpu else 1)
    return processes, threads, math.ceil(seeds / processes)


def describe(processes: int, threads: int) -> str:
    """'2 processes x 1 thread on 2 usable cores' (the plan line's tail)."""
    return (f"{processes} process{'es' * (processes != 1)} x {threads} thread{'s' * (threads != 1)} "
            f"on {usable_cores()} usable core{'s' * (usable_cores() != 1)}")
