"""Executors: where a sweep's tasks run — local processes (madlab.pool), Slurm (submitit), Dask.

Each executor's `run(out, tasks, done, step)` runs `tasks` and calls `done(outcome)` once per
task, after the task's result or failure is on disk under `out`. A task that fails is recorded
and the others go on; a worker that dies is recorded as the failure of the task it ran.

    local        LocalExecutor: this process, or worker processes (madlab.pool)
    slurm        SlurmExecutor: one Slurm array job per submission (submitit)
    slurm_jobs   the folder's Slurm jobs: squeue's view, the book of submissions, scancel
    dask         DaskExecutor: any dask.distributed cluster
    common       what they share (callback types, optional imports)
"""
from __future__ import annotations

import shutil

from madlab.config import ConfigError
from madlab.executors.common import EXTRAS, Done, Step, require
from madlab.executors.dask import DaskExecutor, connect_within
from madlab.executors.local import LocalExecutor
from madlab.executors.slurm import SlurmExecutor
from madlab.executors.slurm_jobs import JOBS_FILE, SLURM_DIR, TERMINAL, JobBook, JobState, Squeue, cancel_jobs

EXECUTORS = ("local", "slurm", "dask")


def make_executor(name: str, *, jobs: int = 1, threads: int = 1, scheduler: str | None = None,
                  partition: str | None = None, time_min: int = 60, gpus_per_task: int = 0,
                  cpus_per_task: int | None = None, mem_gb: float | None = None,
                  array_parallelism: int = 256, cluster: str | None = None):
    """The executor `name` with its options, checked; ConfigError for bad ones."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    if threads < 0:
        raise ConfigError(f"--threads must be non-negative, got {threads}")
    from madlab.limits import check_threads
    check_threads(threads)
    if name == "local":
        return LocalExecutor(jobs=jobs, threads=threads)
    if name == "dask":
        if not scheduler:
            raise ConfigError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
        require("distributed")
        return DaskExecutor(scheduler=scheduler, threads=threads)
    require("submitit")
    if cluster in (None, "slurm") and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ConfigError("--executor slurm: sbatch/srun not found; run the sweep on a Slurm "
                          "login node (or use --executor local or dask)")
    if time_min < 1 or gpus_per_task < 0 or array_parallelism < 1:
        raise ConfigError("--time-min and --array-parallelism must be positive, --gpus-per-task non-negative")
    return SlurmExecutor(partition=partition, time_min=time_min, gpus_per_task=gpus_per_task,
                         cpus_per_task=cpus_per_task or max(threads, 1), mem_gb=mem_gb,
                         array_parallelism=array_parallelism, threads=threads, cluster=cluster)
