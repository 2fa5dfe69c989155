"""Tasks on this machine: in this process, or in worker processes (madlab.pool)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from madlab import store
from madlab.config import ConfigError
from madlab.executors.common import Done, Step, last_line, outcome_on_disk
from madlab.sweep import Task, compute_task, execute_task, record, record_crash


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
                        done(outcome_on_disk(out, task, state))
                    elif answer[0] == "died" and tries[key] < 2:
                        store.clear_running(out, [task.id])
                        again.append((key, self.target, (str(out), task, self.threads), {}))
                    elif answer[0] == "died":
                        done(record_crash(out, task, _crash_message(answer[1])))
                    else:
                        done(record_crash(out, task, f"the worker failed: {type(answer[1]).__name__}: "
                                                     f"{last_line(answer[1])}"))
                calls = again
            pool.close()
        except BaseException:
            pool.stop()
            store.remove_stale_temporaries(out, older_than_s=0)   # its workers' unfinished writes
            raise


