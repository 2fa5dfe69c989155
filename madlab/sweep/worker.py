"""Running one task, on a worker (this process, a pool worker, a Slurm job, a Dask worker):
compute its rows, checkpointing every generation, and record its result or its failure.

This is the process boundary of a sweep: the driver (madlab.sweep.driver) hands an executor
(madlab.executors) tasks, and the executor calls `execute_task` (or `compute_task`, then
`record`) where the task runs. A failing task (an error, an out-of-memory, NaN distances) is
recorded as data, never raised.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from madlab import store
from madlab.config import RunConfig
from madlab.sweep.spec import Task, task_identity

if TYPE_CHECKING:   # pandas loads where tables are made (fast `madlab --help`)
    import pandas as pd


class Diverged(RuntimeError):
    """A task's distances came out NaN or infinite."""


def check_finite(frame: pd.DataFrame, caught: list) -> None:
    from analysis.metrics import TAIL_METRICS  # m_inlier is NaN, not diverged, with < 2 inliers
    values = frame.loc[~frame["metric"].isin(TAIL_METRICS), "value"]
    bad = frame.loc[values.index[~values.apply(lambda v: v == v and abs(v) != float("inf"))]]
    if len(bad):
        first = bad.iloc[0]
        raise Diverged(f"diverged: {len(bad)} of {len(frame)} distances are NaN or infinite "
                       f"(first: seed {first['seed']}, generation {first['generation']}, "
                       f"{first['metric']})")
    if any("Problem unbounded" in str(w.message) for w in caught):
        raise Diverged("diverged: exact OT was handed non-finite samples (POT: 'Problem unbounded')")


def failure_record(task: Task, err: BaseException, seconds: float) -> dict:
    text = (str(err) if isinstance(err, Diverged) else f"{type(err).__name__}: {err}").replace("\n", " ")
    kind = ("diverged" if isinstance(err, Diverged) else
            "out-of-memory" if isinstance(err, MemoryError) or "out of memory" in str(err).lower()
            else "error")
    return {"task": task.id, "run": task.run, "point": task.point, "kind": kind, "error": text,
            "traceback": "".join(traceback.format_exception(err)[-6:]),
            "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(),
            "seconds": seconds}


# a pool worker's process-wide settings (set in each pool worker by madlab.interrupt.worker_init)
WORKER = {"lease": False}    # lease: check before every write that the driver still holds the lock


def compute_task(task: Task, threads: int = 1, progress: Callable[[int, int], None] | None = None,
                 out: str | Path | None = None, lease: bool | None = None
                 ) -> tuple[pd.DataFrame | None, dict | None]:
    """Run `task`: (its rows, None) or (None, its failure record). Never raises for a failing
    run (an error, an out-of-memory, NaN distances).

    With `out` (a sweep directory this process can write), every finished generation is
    checkpointed under out/tasks/<id>.ckpt/ and a rerun continues after the newest one; with
    `lease` (default: this worker's setting) each write first checks that the driver that
    started the task still holds the directory's lock (madlab.store.Lease)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from madlab.provenance import now, provenance

    started = time.perf_counter()
    record = provenance(task.config.get("device", "cpu"))     # where and by what code it runs
    if out is not None and task.config.get("samples_dir"):    # recorded relative to the folder
        from madlab.samples import resolve
        task = Task(task.id, task.run, task.point,
                    {**task.config, "samples_dir": resolve(task.config["samples_dir"], Path(out))})
    checkpoint, resumed = None, 0
    if out is not None and (Path(out) / store.MANIFEST).exists():
        lease = WORKER["lease"] if lease is None else lease
        checkpoint = store.TaskCheckpoint(out, task.id, keep=bool(task.config.get("keep_checkpoints")),
                                          lease=store.Lease(out) if lease else None,
                                          expect=task_identity(task))
        resumed = checkpoint.generations()
    # warnings are process-global: collect them (POT's sign of NaN samples) only in the main
    # thread, never from a threaded worker (dask) where they would mix with other tasks'
    watch = threading.current_thread() is threading.main_thread()
    caught: list = []
    try:
        try:
            with warnings.catch_warnings(record=True) if watch else contextlib.nullcontext([]) as caught:
                if watch:
                    warnings.simplefilter("always")
                frame = run_config(task.run_config(), progress=progress, checkpoint=checkpoint)
        finally:        # recorded to spot POT's sign of NaN samples; shown to the user all the same
            shown = set()
            for w in caught:
                if (w.category, str(w.message)) not in shown:
                    shown.add((w.category, str(w.message)))
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        check_finite(frame, caught)
        frame["run"] = task.run
        frame.attrs.clear()
        frame.attrs["provenance"] = {**record, "ended": now(),
                                     "resumed_after_generation": resumed}
        return frame, None
    except (store.Abandoned, store.DiskError):
        raise             # not the task's failure: the driver is gone, or the disk failed
    except Exception as err:  # noqa: BLE001 - a failing task is data, recorded with its error
        return None, failure_record(task, err, time.perf_counter() - started)


def run_config(cfg: RunConfig, progress=None, checkpoint=None) -> pd.DataFrame:
    from madlab.runner import run_config as run

    return run(cfg, progress=progress, checkpoint=checkpoint)


def record(out: Path, task: Task, frame: pd.DataFrame | None, failure: dict | None) -> dict:
    """Write a task's result (or failure) atomically; return its small outcome. A finished
    task's checkpoint is removed (unless kept); a failed one's stays for the retry."""
    if frame is not None:
        store.write_task_result(out, task.id, frame, task_identity(task))
        store.TaskCheckpoint(out, task.id, keep=bool(task.config.get("keep_checkpoints"))).clear()
        return {"id": task.id, "state": "done", "rows": len(frame)}
    store.write_task_failure(out, task.id, failure)
    return {"id": task.id, "state": "failed", "error": failure["error"]}


def execute_task(out: str, task: Task, threads: int = 1) -> dict:
    """Worker entry point (local processes, Slurm jobs): run `task` and record it under `out`,
    continuing after its newest checkpointed generation."""
    store.mark_running(out, task.id)
    frame, failure = compute_task(task, threads, out=out)
    return record(Path(out), task, frame, failure)


def record_crash(out: Path, task: Task, message: str) -> dict:
    """A worker died (or a job was lost) before it could record `task` itself."""
    failure = {"task": task.id, "run": task.run, "point": task.point, "kind": "crashed",
               "error": message, "traceback": "", "host": socket.gethostname(), "pid": None,
               "time": time.time(), "seconds": None}
    return record(out, task, None, failure)
