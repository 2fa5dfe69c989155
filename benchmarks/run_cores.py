"""`madlab run` on every usable core (the default) against `--jobs 1`, side by side in one run.

Runs the same command (madlab run's defaults: the augment loop, SIMS at w = 3; here --seeds 16
--gens 2) as a fresh process, once per layout, each into a new run directory, and prints the
machine, every wall and CPU time, the ratio of wall times against `--jobs 1`, and whether the
result rows are equal (the rows of results.parquet, sorted by seed, generation and metric: every
column but the timings and `ensemble`, the chunk size, compared exactly).

    nice -n 5 python -m benchmarks run_cores                    # default vs --jobs 1 (vs 2 threads)
    python -m benchmarks run_cores --seeds 16 --gens 2 --no-threads

Options it does not know go on to `madlab run` (`--epochs 10`, ...).

Needs an otherwise idle machine: on a loaded one the processes compete with the load, not with
each other.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import TINY_RUN

KEYS = ["seed", "generation", "metric"]
SHARED = dict(seeds=16)
TINY = dict(seeds=2, gens=1, no_threads=True)
PASS_ON = True   # options it does not know: `madlab run`'s (args.extra)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def madlab_run(out: Path, args: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the process and its workers, the plan line) of one `madlab run`."""
    cpu0, wall0 = children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "madlab", "run", *args, "--quiet", "--out", str(out)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    wall, cpu = time.perf_counter() - wall0, children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"madlab run {' '.join(args)} failed:\n{done.stderr}")
    plan = next((l for l in done.stderr.splitlines() if l.startswith("plan:")), "")
    return wall, cpu, plan


def rows(out: Path):
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet").sort_values(KEYS, ignore_index=True)
    return frame.drop(columns=[c for c in frame.columns if c.startswith("time_")] + ["ensemble"])


def worker_start_s() -> float:
    """Seconds to spawn one worker process and import what a task imports (madlab.pool)."""
    from madlab.pool import WorkerPool

    pool = WorkerPool(1)
    start = time.perf_counter()
    for _ in pool.run([(0, _imports, (), {})]):
        pass
    seconds = time.perf_counter() - start
    pool.close()
    return seconds


COMPUTE = ("import sys, time, torch; torch.set_num_threads(1); from madlab.config import RunConfig; "
           "from madlab.runner import run_config; cfg = RunConfig.from_flat(seeds=int(sys.argv[1]), "
           "first_seed=int(sys.argv[2]), gens=int(sys.argv[3])); t = time.perf_counter(); run_config(cfg); "
           "print(time.perf_counter() - t)")


def compute_s(chunks: list[tuple[int, int]], gens: int) -> float:
    """Seconds of run_config alone (no start-up, probe, files or summary) for the chunks
    (seeds, first seed), each in its own one-thread process, all at once: the slowest one's."""
    procs = [subprocess.Popen([sys.executable, "-c", COMPUTE, str(n), str(f), str(gens)],
                              stdout=subprocess.PIPE, text=True) for n, f in chunks]
    return max(float(p.communicate()[0].split()[-1]) for p in procs)


def _imports() -> None:
    import madlab.runner  # noqa: F401  (torch, pandas, POT, the toy DDPM)


def arguments(parser) -> None:
    parser.add_argument("--gens", type=int, default=2)
    parser.add_argument("--no-threads", action="store_true",
                        help="skip the third layout: one process with one thread per core")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip timing the loop alone in one process vs one process per core")


def run(opts) -> None:
    from madlab.cores import usable_cores

    cores = usable_cores()
    extra = opts.extra + (TINY_RUN if opts.tiny else [])
    common = ["--seeds", str(opts.seeds), "--gens", str(opts.gens), *extra]
    layouts = [("--jobs 1 (one process, one thread)", ["--jobs", "1"]),
               (f"default (every usable core: --jobs {min(cores, opts.seeds)})", [])]
    if not opts.no_threads and cores > 1:
        layouts.append((f"--jobs 1 --threads {cores} (one process, a thread per core)",
                        ["--jobs", "1", "--threads", str(cores)]))
    print(f"command: madlab run {' '.join(common)} [layout] --quiet --out DIR (fresh directories)")
    print(f"worker start-up (spawn + imports), measured once: {worker_start_s():.2f} s")
    if cores > 1 and not opts.no_ceiling and not extra:
        half = opts.seeds // cores
        one = compute_s([(opts.seeds, 0)], opts.gens)
        split = compute_s([(half, i * half) for i in range(cores)], opts.gens)
        print(f"the loop alone (run_config, no start-up/probe/files/summary): {opts.seeds} seeds in one "
              f"process {one:.1f} s; {cores} x {half} seeds in {cores} processes at once {split:.1f} s: "
              f"{one / split:.2f}x, the most {cores} processes gain on this machine at these sizes")
    results = []
    with tempfile.TemporaryDirectory(prefix="madlab-run-cores-") as tmp:
        for i, (label, args) in enumerate(layouts):
            out = Path(tmp) / f"run{i}"
            wall, cpu, plan = madlab_run(out, common + args)
            results.append((label, wall, cpu, rows(out)))
            print(f"{label}: {wall:.1f} s wall, {cpu:.1f} CPU-s\n    {plan}")
        base_label, base_wall, _, base_rows = results[0]
        for label, wall, _, frame in results[1:]:
            equal = frame.equals(base_rows)
            values = frame["value"].equals(base_rows["value"])
            rel = ((frame["value"] - base_rows["value"]).abs() / base_rows["value"].abs().clip(lower=1e-300)).max()
            differ = int((frame["value"] != base_rows["value"]).sum())
            print(f"{label} vs {base_label}: {base_wall / wall:.2f}x faster wall; "
                  f"result rows equal: {equal} (value column equal: {values}; {differ} of {len(frame)} "
                  f"values differ, by at most {rel:.2g} relative)")
