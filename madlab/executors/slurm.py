"""Tasks as Slurm jobs, through submitit: one array job per submission, one element per task.

submitit writes the sbatch script, pickles each call and runs it on a node (madlab.slurm_task
lets Slurm requeue it); job states come from squeue and the record of what was submitted from
madlab.executors.slurm_jobs. Only submitit's public API is used (AutoExecutor, SlurmJob.paths,
submitit.helpers), with one exception: a job's result file is read here with `pickle` rather
than through `job.result()`, because result() first asks the job's state of `sacct`, which
clusters without accounting storage do not answer. What the file holds, submitit's
("success" | "error", value) pair, is submitit's own format (submitit/core/submission.py); were a
submitit release to change it, results would read as unreadable here and each task's outcome
would come from its own files on disk (the task records itself before its job ends).
"""
from __future__ import annotations

import pickle
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from madlab import store
from madlab.config import ConfigError
from madlab.executors.common import Done, Step, last_line, outcome_on_disk, require
from madlab.executors.slurm_jobs import SLURM_DIR, JobBook, JobState, Squeue, cancel_jobs, id_range
from madlab.sweep import Task, execute_task, record_crash


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
                done(outcome_on_disk(out, task, "done"))     # its job finished since the sweep looked
            else:
                fresh.append(task)                   # never submitted, or its job ended without a result
        if waiting:
            print(f"slurm: {len(waiting)} of {len(tasks)} tasks are still queued or running from an "
                  f"earlier submission (jobs {id_range(waiting)}); waiting for them instead of "
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
        paths = require("submitit").SlurmJob(folder, job).paths   # the job's files (submitit's job.paths)
        result = paths.result_pickle
        grace = self.result_grace_s if state is None or state.state == "COMPLETED" else 0.0
        deadline = time.monotonic() + grace
        while not _fresh(result, submitted) and time.monotonic() < deadline:
            time.sleep(0.5)
        disk = store.task_state(out, task.id)
        where = f"slurm job {job}"
        if _fresh(result, submitted):
            try:
                with open(result, "rb") as f:
                    kind, value = pickle.load(f)          # submitit's ("success" | "error", value)
            except Exception as err:  # noqa: BLE001 - a torn or foreign file: treat as no result
                kind, value = "error", f"unreadable result file {result}: {err}"
            if kind == "success" and isinstance(value, dict):
                return value
            if disk == "done":
                return outcome_on_disk(out, task, disk)
            return record_crash(out, task, f"{where} failed: {last_line(value)}")
        if disk == "done":
            return outcome_on_disk(out, task, disk)
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
                    outcome = (outcome_on_disk(out, task, state) if state != "pending" else
                               record_crash(out, task, f"slurm job {job.job_id} failed: "
                                            f"{type(err).__name__}: {last_line(err)}"))
                done(outcome)
            if waiting:
                time.sleep(self.poll_s)



def _fresh(path: Path, since: float) -> bool:
    """`path` exists and was written after `since` (less a minute of clock skew between nodes)."""
    try:
        return path.stat().st_mtime >= since - 60
    except FileNotFoundError:
        return False

