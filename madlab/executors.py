"""Executors: where a sweep's tasks run — local processes (madlab.pool), Slurm (submitit), Dask.

Each executor's `run(out, tasks, done, step)` runs `tasks` and calls `done(outcome)` once per
task, after the task's result or failure is on disk under `out`. A task that fails is recorded
and the others go on; a worker that dies is recorded as the failure of the task it ran.
"""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
import uuid
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
    """Tasks on this machine: in this process (jobs = 1) or `jobs` worker processes."""
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
        last = [store.checkpointed_generations(out, task.id) * task.config["seeds"]]  # resumed ones

        def progress(finished: int, total: int) -> None:
            if step is not None:
                step(max(0, finished - last[0]))
            last[0] = finished

        frame, failure = compute_task(task, self.threads, progress, out=out)
        return record(out, task, frame, failure)

    def _pool(self, out: Path, tasks: list[Task], done: Done) -> None:
        """Run in `jobs` worker processes (madlab.pool). A task whose worker dies is tried once
        more in a fresh worker and recorded as crashed if it kills that one too; the other tasks
        go on. On a signal (or any error here) every worker is killed before the exception goes
        on: none outlives this call, and their unfinished writes are removed."""
        from madlab.pool import WorkerPool

        pool = WorkerPool(min(self.jobs, len(tasks)))
        owner = {t.id: t for t in tasks}
        tries = {t.id: 0 for t in tasks}
        calls = [(t.id, self.target, (str(out), t, self.threads), {}) for t in tasks]
        try:
            while calls:
                again = []
                for key, answer in pool.run(calls):
                    task = owner[key]
                    tries[key] += 1
                    if answer[0] == "ok":
                        done(answer[1])
                        continue
                    if answer[0] == "error" and isinstance(answer[1], (store.DiskError, ConfigError)):
                        raise answer[1]
                    state = store.task_state(out, task.id)
                    if state != "pending":                 # recorded before its worker died
                        done(_outcome_on_disk(out, task, state))
                    elif answer[0] == "died" and tries[key] < 2:
                        store.clear_running(out, [task.id])
                        again.append((key, self.target, (str(out), task, self.threads), {}))
                    elif answer[0] == "died":
                        done(record_crash(out, task, _crash_message(answer[1])))
                    else:
                        done(record_crash(out, task, f"the worker failed: {type(answer[1]).__name__}: "
                                                     f"{_first_line(answer[1])}"))
                calls = again
            pool.close()
        except BaseException:
            pool.stop()
            store.remove_stale_temporaries(out, older_than_s=0)   # its workers' unfinished writes
            raise


def _outcome_on_disk(out: Path, task: Task, state: str) -> dict:
    if state == "failed":
        return {"id": task.id, "state": "failed", "error": (store.read_failure(out, task.id) or {}).get("error")}
    return {"id": task.id, "state": state}


@dataclass
class SlurmExecutor:
    """One Slurm array job per submission (one array element per task), through submitit. The
    sweep directory must be on a file system the compute nodes share.

    Job states come from `squeue` (one call per poll for all of this sweep's jobs), never from
    `sacct`, so clusters without accounting storage work quietly. Every submission is recorded in
    `DIR/slurm/jobs.json` (task id -> Slurm job id) before and after `sbatch`; a rerun after the
    driver died waits for the tasks whose jobs Slurm still has queued or running instead of
    submitting them again, and resubmits only those whose job is gone without a result."""
    partition: str | None = None      # Slurm partition (None: the cluster's default)
    time_min: int = 60                # wall-time limit per task, minutes
    gpus_per_task: int = 0            # GPUs per task
    cpus_per_task: int = 1            # CPU cores per task
    mem_gb: float | None = None       # memory per task (None: the partition's default)
    array_parallelism: int = 256      # most array elements running at once
    threads: int = 1                  # torch threads per task
    cluster: str | None = None        # submitit cluster: None = slurm; "local" runs jobs as local processes (tests)
    poll_s: float = 5.0               # seconds between checks of the jobs' states
    result_grace_s: float = 15.0      # how long a finished job's result file may lag (shared file systems)
    target: Callable = execute_task
    name = "slurm"
    in_process = False

    def _submitit_executor(self, folder: Path, name: str, comment: str | None = None):
        submitit = require("submitit")
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster=self.cluster or "slurm")
        except RuntimeError as err:                  # e.g. no srun: not a Slurm machine
            raise ConfigError(f"--executor slurm: {err}") from None
        params = dict(timeout_min=self.time_min, gpus_per_node=self.gpus_per_task,
                      cpus_per_task=self.cpus_per_task, tasks_per_node=1, nodes=1,
                      name=f"madlab-{name}", slurm_array_parallelism=self.array_parallelism)
        if self.partition:
            params["slurm_partition"] = self.partition
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        if comment:
            params["slurm_comment"] = comment
        executor.update_parameters(**params)
        return executor

    def _submit(self, executor, out: Path, tasks: list[Task]) -> list:
        from madlab.slurm_task import SlurmTask     # requeued on USR2 (time limit, preemption)

        n = len(tasks)
        try:
            return executor.map_array(SlurmTask(self.target), [str(out)] * n, tasks, [self.threads] * n)
        except Exception as err:  # noqa: BLE001 - sbatch missing or refusing: one clear line
            raise ConfigError(f"could not submit the Slurm jobs: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}")

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        out = Path(out)
        if self.cluster not in (None, "slurm"):
            return self._run_submitit(out, tasks, done)
        folder = out / SLURM_DIR                     # submitit: <job id>_<array index>_log.out/err
        book = JobBook.load(out)
        queue = Squeue()
        known = queue.states(must=True)
        book.resolve(known)
        waiting: dict[str, Task] = {}
        fresh: list[Task] = []
        for task in tasks:
            job, token = book.job_of(task.id), book.token_of(task.id)
            state = known.get(job) if job is not None else None
            if state is not None and state.live and state.comment == token:   # ours, not a reused id
                waiting[job] = task                  # still queued or running: wait, never resubmit
            elif store.task_state(out, task.id) == "done":
                done(_outcome_on_disk(out, task, "done"))     # its job finished since the sweep looked
            else:
                fresh.append(task)                   # never submitted, or its job ended without a result
        if waiting:
            print(f"slurm: {len(waiting)} of {len(tasks)} tasks are still queued or running from an "
                  f"earlier submission (jobs {_id_range(waiting)}); waiting for them instead of "
                  "resubmitting", file=sys.stderr, flush=True)
        if fresh:
            token = f"madlab-{uuid.uuid4().hex}"     # finds the jobs if we die right after sbatch
            book.add(token, [t.id for t in fresh])
            book.save()
            jobs = self._submit(self._submitit_executor(folder, out.name, token), out, fresh)
            book.set_jobs(token, [j.job_id for j in jobs])
            book.save()
            waiting.update({j.job_id: t for j, t in zip(jobs, fresh)})
        try:
            while waiting:
                states = queue.states()
                if states is not None:
                    for job, task in list(waiting.items()):
                        state = states.get(job)
                        if state is None or not state.live:
                            del waiting[job]
                            done(self._finish(out, folder, job, task, state, book.submitted(job)))
                if waiting:
                    time.sleep(self.poll_s)
        except BaseException:
            cancel_jobs(list(waiting))        # Ctrl-C / SIGTERM stop the jobs too; a rerun resumes them
            raise

    def _finish(self, out: Path, folder: Path, job: str, task: Task, state: "JobState | None",
                submitted: float) -> dict:
        """The outcome of `task` whose Slurm job `job` has left the queue in `state` (None: Slurm
        no longer knows it)."""
        from submitit.core.utils import JobPaths, pickle_load

        paths = JobPaths(folder, job_id=job, task_id=0)
        result = paths.result_pickle
        grace = self.result_grace_s if state is None or state.state == "COMPLETED" else 0.0
        deadline = time.monotonic() + grace
        while not _fresh(result, submitted) and time.monotonic() < deadline:
            time.sleep(0.5)
        disk = store.task_state(out, task.id)
        where = f"slurm job {job}"
        if _fresh(result, submitted):
            try:
                kind, value = pickle_load(result)
            except Exception as err:  # noqa: BLE001 - a torn or foreign file: treat as no result
                kind, value = "error", f"unreadable result file {result}: {err}"
            if kind == "success" and isinstance(value, dict):
                return value
            if disk == "done":
                return _outcome_on_disk(out, task, disk)
            return record_crash(out, task, f"{where} failed: {_last_line(str(value))}")
        if disk == "done":
            return _outcome_on_disk(out, task, disk)
        how = (f"ended {state.state}" + (f" ({state.reason})" if state.reason not in ("", "None") else "")
               if state is not None else "is no longer known to Slurm (cancelled, timed out or killed)")
        return record_crash(out, task, f"{where} {how} without a result; its log: {paths.stderr}")

    def _run_submitit(self, out: Path, tasks: list[Task], done: Done) -> None:
        """submitit's own job tracking (its local cluster: jobs as local processes, for tests)."""
        jobs = self._submit(self._submitit_executor(out / SLURM_DIR, out.name), out, tasks)
        waiting = dict(zip(jobs, tasks))
        try:
            self._wait_submitit(out, waiting, done)
        except BaseException:
            for job in waiting:
                job.cancel(check=False)
            raise

    def _wait_submitit(self, out: Path, waiting: dict, done: Done) -> None:
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


def cancel_jobs(jobs: list[str]) -> None:
    """scancel this sweep's live jobs (the driver was stopped by a signal); say so in one line."""
    if not jobs:
        return
    try:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"slurm: could not cancel jobs {_id_range(jobs)} ({err}); cancel them with scancel",
              file=sys.stderr, flush=True)
        return
    deadline = time.monotonic() + 60          # until Slurm has let them go (COMPLETING is live):
    queue = Squeue()                           # a rerun then resubmits them at once
    while time.monotonic() < deadline:
        states = queue.states()
        if states is not None and not any(states[j].live for j in jobs if j in states):
            break
        time.sleep(0.5)
    print(f"slurm: cancelled {len(jobs)} queued or running job{'s' * (len(jobs) != 1)} "
          f"({_id_range(jobs)}); their finished generations are kept", file=sys.stderr, flush=True)


SLURM_DIR = "slurm"                    # DIR/slurm: submitit's files and jobs.json
JOBS_FILE = "jobs.json"
# squeue states of a job that is over (anything else squeue lists is queued, running or requeued;
# PREEMPTED counts as live because a requeued job passes through it)
TERMINAL = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                      "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})


@dataclass(frozen=True)
class JobState:
    state: str                        # squeue's %T: PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str = ""                  # squeue's %r
    comment: str = ""                 # squeue's %k (our submission token)
    array: str = ""                   # the array's job id (%F; a plain job's own id)

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL


class Squeue:
    """This user's jobs as slurmctld knows them (queued, running and, for MinJobAge, finished),
    one `squeue` call per look; no accounting storage (sacct) needed."""

    FORMAT = "%i|%F|%T|%r|%k"       # job (ARRAY_INDEX), array job id, state, reason, comment

    def __init__(self):
        self.failing = False

    def states(self, must: bool = False) -> dict[str, JobState] | None:
        """Job id (array elements as ARRAY_INDEX) -> state; None if squeue failed (reported once),
        ConfigError instead when `must`."""
        import getpass

        cmd = ["squeue", "--noheader", "--array", "--states=all", f"--user={getpass.getuser()}",
               f"--format={self.FORMAT}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            problem = None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as err:
            done, problem = None, str(err)
        if problem:
            if must:
                raise ConfigError(f"--executor slurm: squeue failed: {_last_line(problem)}")
            if not self.failing:
                print(f"slurm: squeue failed ({_last_line(problem)}); retrying", file=sys.stderr, flush=True)
            self.failing = True
            return None
        self.failing = False
        jobs = {}
        for line in done.stdout.splitlines():
            parts = line.strip().split("|", 4)
            if len(parts) == 5:
                job, array, state, reason, comment = parts
                jobs[job] = JobState(state.split()[0].rstrip("+"), reason, comment, array)
        return jobs


@dataclass
class JobBook:
    """DIR/slurm/jobs.json: every submission of this sweep directory to Slurm, in order: a token
    (also the jobs' --comment), its tasks, and their Slurm job ids once sbatch returned (null
    before: then the token finds them in squeue)."""
    path: Path
    submissions: list = field(default_factory=list)

    @classmethod
    def load(cls, out: Path) -> "JobBook":
        path = Path(out) / SLURM_DIR / JOBS_FILE
        try:
            data = json.loads(path.read_text())
            return cls(path, list(data["submissions"]))
        except FileNotFoundError:
            return cls(path)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path} is unreadable ({err}); remove it to resubmit every unfinished task")

    def save(self) -> None:
        store.atomic_write_bytes(self.path, json.dumps({"submissions": self.submissions}, indent=1).encode())

    def add(self, token: str, task_ids: list[str]) -> None:
        self.submissions.append({"token": token, "time": time.time(), "tasks": task_ids, "jobs": None})

    def set_jobs(self, token: str, job_ids: list[str]) -> None:
        for sub in self.submissions:
            if sub["token"] == token:
                sub["jobs"] = list(job_ids)

    def resolve(self, known: dict[str, JobState]) -> None:
        """Fill in the job ids of submissions whose driver died before it could write them."""
        changed = False
        for sub in self.submissions:
            if sub["jobs"] is not None:
                continue
            arrays = {s.array for s in known.values() if s.comment == sub["token"]}
            if len(arrays) == 1:
                (array,) = arrays
                n = len(sub["tasks"])
                sub["jobs"] = [array] if n == 1 and array in known else [f"{array}_{i}" for i in range(n)]
                changed = True
        if changed:
            self.save()

    def job_of(self, task_id: str) -> str | None:
        """The Slurm job of the task's latest submission (None: never submitted, or unknown)."""
        for sub in reversed(self.submissions):
            if task_id in sub["tasks"]:
                return sub["jobs"][sub["tasks"].index(task_id)] if sub["jobs"] else None
        return None

    def token_of(self, task_id: str) -> str | None:
        for sub in reversed(self.submissions):
            if task_id in sub["tasks"]:
                return sub["token"]
        return None

    def submitted(self, job: str) -> float:
        for sub in self.submissions:
            if sub["jobs"] and job in sub["jobs"]:
                return sub["time"]
        return 0.0


def _fresh(path: Path, since: float) -> bool:
    """`path` exists and was written after `since` (less a minute of clock skew between nodes)."""
    try:
        return path.stat().st_mtime >= since - 60
    except FileNotFoundError:
        return False


def _last_line(text: str) -> str:
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    return lines[-1] if lines else ""


def _id_range(jobs) -> str:
    ids = sorted(jobs)
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"


def _first_line(err: BaseException) -> str:
    lines = [l for l in str(err).splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""


@dataclass
class DaskExecutor:
    """Tasks on any dask.distributed cluster (LocalCluster, dask-jobqueue, Kubernetes): workers
    compute, this process writes the results, so workers need no shared file system."""
    scheduler: str                    # scheduler address (tcp://host:8786) or a scheduler JSON file
    threads: int = 1                  # torch threads per task
    target: Callable = compute_task   # worker entry point (task, threads=) -> (rows, failure)
    timeout_s: float = 30.0           # the whole connection, handshake included
    name = "dask"
    in_process = False

    client: object = field(default=None, repr=False)   # set by connect()

    def connect(self):
        """Connect to the scheduler (once); ConfigError if it cannot be reached."""
        if self.client is None:
            distributed = require("distributed")
            where = self.scheduler
            if where.endswith(".json") and Path(where).exists():
                try:
                    address = json.loads(Path(where).read_text())["address"]
                    if not isinstance(address, str):
                        raise TypeError("its address is not a string")
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise ConfigError(f"--scheduler {where} is not a dask scheduler file ({type(err).__name__}: "
                                      f"{' '.join(str(err).split())}); give the JSON file dask-scheduler "
                                      "--scheduler-file wrote, or an address") from None
                where = address
            self.client = connect_within(distributed, where, self.timeout_s, self.scheduler)
        return self.client

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        distributed = require("distributed")
        client = self.connect()
        futures = []
        try:
            # workers that see `out` (one machine, a shared disk) checkpoint every generation
            # there, under a lease on this driver's lock; the others compute in memory
            futures = client.map(self.target, tasks, threads=self.threads, out=str(Path(out).resolve()), lease=True,
                                 pure=False)
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
        except BaseException:
            # a signal: drop every task from the cluster; a task already running stops at its next
            # checkpoint, when its lease sees that this driver has let go of the lock
            if futures:
                client.cancel(futures, force=True)
            raise
        finally:
            client.close()
            self.client = None


def connect_within(distributed, address: str, timeout_s: float, given: str):
    """A dask Client of the scheduler at `address`, or ConfigError within about `timeout_s`: the
    client's own timeout covers the TCP connection only, and a server that accepts it but never
    speaks dask's protocol would hold the handshake for ever, so the connection runs in a thread
    this one stops waiting for."""
    import threading

    found: dict = {}

    def connect() -> None:
        try:
            found["client"] = distributed.Client(address, timeout=f"{timeout_s:g}s")
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            found["error"] = err

    worker = threading.Thread(target=connect, daemon=True, name="madlab-dask-connect")
    worker.start()
    worker.join(timeout_s + 5)
    if worker.is_alive():
        raise ConfigError(f"no dask scheduler answered at {given} within {timeout_s:g} s (is it a dask "
                          "scheduler's address, tcp://host:8786?)")
    if "error" in found:
        err = found["error"]
        if isinstance(err, (OSError, TimeoutError, ValueError, TypeError)):
            raise ConfigError(f"cannot reach the dask scheduler at {given}: "
                              f"{' '.join(str(err).split()) or type(err).__name__}") from None
        raise err
    return found["client"]


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
