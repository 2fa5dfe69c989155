"""Executors: where a sweep's tasks run — local processes (joblib), Slurm (submitit), Dask.

Each executor's `run(out, tasks, done, step)` runs `tasks` and calls `done(outcome)` once per
task, after the task's result or failure is on disk under `out`. A task that fails is recorded
and the others go on; a worker that dies is recorded as the failure of the task it ran.
"""
from __future__ import annotations

import importlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from madlab import store
from madlab.config import ConfigError
from madlab.sweep import Task, compute_task, execute_task, record, record_crash

Done = Callable[[dict], None]          # called with each task's outcome {id, state, ...}
Step = Callable[[int], None]           # called with seed-generations just finished (in-process only)
EXECUTORS = ("local", "slurm", "dask")
EXTRAS = {"submitit": "slurm", "distributed": "dask"}


def require(module: str):
    """Import an optional dependency or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module]
        raise ConfigError(f"the {extra} executor needs the '{module}' package: "
                          f"pip install 'madlab[{extra}]'") from None


def _crash_message(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (f"the worker process died while running this task (killed by the OS, e.g. out of "
            f"memory, or a crash in native code): {type(err).__name__}"
            + (f": {text[0]}" if text else ""))


@dataclass
class LocalExecutor:
    """Tasks on this machine: in this process (jobs = 1) or a joblib/loky process pool."""
    jobs: int = 1                 # processes running tasks at once
    threads: int = 1              # torch threads per task (0: leave torch's setting alone)
    target: Callable = execute_task   # worker entry point (out, task, threads) -> outcome
    name = "local"

    @property
    def in_process(self) -> bool:
        return self.jobs == 1

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        if self.in_process:
            for task in tasks:
                done(self._in_process(out, task, step))
        else:
            self._pool(out, tasks, done)

    def _in_process(self, out: Path, task: Task, step: Step | None) -> dict:
        if self.target is not execute_task:
            return self.target(str(out), task, self.threads)
        store.mark_running(out, task.id)
        last = [0]

        def progress(finished: int, total: int) -> None:
            if step is not None:
                step(finished - last[0])
            last[0] = finished

        frame, failure = compute_task(task, self.threads, progress)
        return record(out, task, frame, failure)

    def _pool(self, out: Path, tasks: list[Task], done: Done) -> None:
        """Run in joblib's loky process pool. If a worker dies, the pool breaks: the tasks that
        were running are each retried alone, and one that kills its worker again is recorded as
        crashed; the tasks not yet started go on."""
        from concurrent.futures import as_completed

        from joblib.externals.loky import get_reusable_executor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        queue, alone = list(tasks), []
        while queue or alone:
            batch, isolated = (queue, False) if queue else ([alone.pop(0)], True)
            pool = get_reusable_executor(max_workers=min(self.jobs, len(batch)))
            futures = {pool.submit(self.target, str(out), t, self.threads): t for t in batch}
            broken, left = None, []
            for future in as_completed(futures):
                task = futures[future]
                try:
                    done(future.result())
                except BrokenProcessPool as err:
                    broken = err
                    state = store.task_state(out, task.id)
                    if state != "pending":                 # recorded before the pool broke
                        done(_outcome_on_disk(out, task, state))
                    else:
                        left.append(task)
            if broken is None:
                if not isolated:
                    queue = []
                continue
            if isolated:
                for task in left:
                    done(record_crash(out, task, _crash_message(broken)))
                continue
            running = [t for t in left if store.is_running(out, t.id)] or left
            alone += running
            queue = [t for t in left if t not in running]
            store.clear_running(out, [t.id for t in left])


def _outcome_on_disk(out: Path, task: Task, state: str) -> dict:
    if state == "failed":
        return {"id": task.id, "state": "failed", "error": (store.read_failure(out, task.id) or {}).get("error")}
    return {"id": task.id, "state": state}


@dataclass
class SlurmExecutor:
    """One Slurm array job per sweep (one array element per task), through submitit. The sweep
    directory must be on a file system the compute nodes share."""
    partition: str | None = None      # Slurm partition (None: the cluster's default)
    time_min: int = 60                # wall-time limit per task, minutes
    gpus_per_task: int = 0            # GPUs per task
    cpus_per_task: int = 1            # CPU cores per task
    mem_gb: float | None = None       # memory per task (None: the partition's default)
    array_parallelism: int = 256      # most array elements running at once
    threads: int = 1                  # torch threads per task
    cluster: str | None = None        # submitit cluster: None = slurm; "local" runs jobs as local processes (tests)
    poll_s: float = 2.0               # seconds between checks of the jobs' states
    target: Callable = execute_task
    name = "slurm"
    in_process = False

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        submitit = require("submitit")
        folder = Path(out) / "slurm"                 # submitit: <job id>_<array index>_log.out/err
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster or "slurm")
        except RuntimeError as err:                  # e.g. no srun: not a Slurm machine
            raise ConfigError(f"--executor slurm: {err}") from None
        params = dict(timeout_min=self.time_min, gpus_per_node=self.gpus_per_task,
                      cpus_per_task=self.cpus_per_task, tasks_per_node=1, nodes=1,
                      name=f"madlab-{Path(out).name}", slurm_array_parallelism=self.array_parallelism)
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        executor.update_parameters(**params)
        n = len(tasks)
        try:
            jobs = executor.map_array(self.target, [str(out)] * n, tasks, [self.threads] * n)
        except Exception as err:  # noqa: BLE001 - sbatch missing or refusing: one clear line
            raise ConfigError(f"could not submit the Slurm jobs: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}")
        waiting = dict(zip(jobs, tasks))
        while waiting:
            for job, task in list(waiting.items()):
                if not job.done():
                    continue
                del waiting[job]
                try:
                    outcome = job.result()
                except Exception as err:  # noqa: BLE001 - the job died: timeout, OOM kill, preemption
                    state = store.task_state(out, task.id)
                    outcome = (_outcome_on_disk(out, task, state) if state != "pending" else
                               record_crash(out, task, f"slurm job {job.job_id} failed: "
                                            f"{type(err).__name__}: {_first_line(err)}"))
                done(outcome)
            if waiting:
                time.sleep(self.poll_s)


def _first_line(err: BaseException) -> str:
    lines = [l for l in str(err).splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


@dataclass
class DaskExecutor:
    """Tasks on any dask.distributed cluster (LocalCluster, dask-jobqueue, Kubernetes): workers
    compute, this process writes the results, so workers need no shared file system."""
    scheduler: str                    # scheduler address (tcp://host:8786) or a scheduler JSON file
    threads: int = 1                  # torch threads per task
    name = "dask"
    in_process = False

    client: object = field(default=None, repr=False)   # set by connect()

    def connect(self):
        """Connect to the scheduler (once); ConfigError if it cannot be reached."""
        if self.client is None:
            distributed = require("distributed")
            where = self.scheduler
            try:
                if where.endswith(".json") and Path(where).exists():
                    self.client = distributed.Client(scheduler_file=where, timeout="30s")
                else:
                    self.client = distributed.Client(where, timeout="30s")
            except (OSError, TimeoutError, ValueError) as err:
                raise ConfigError(f"cannot reach the dask scheduler at {where}: {err}") from None
        return self.client

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        distributed = require("distributed")
        client = self.connect()
        try:
            futures = client.map(compute_task, tasks, threads=self.threads, pure=False)
            owner = {f.key: t for f, t in zip(futures, tasks)}
            for future in distributed.as_completed(futures):
                task = owner[future.key]
                try:
                    frame, failure = future.result()
                except Exception as err:  # noqa: BLE001 - a worker died (KilledWorker) or was lost
                    done(record_crash(out, task, f"dask: {type(err).__name__}: {_first_line(err)}"))
                else:
                    done(record(out, task, frame, failure))
                future.release()
        finally:
            client.close()
            self.client = None


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
