"""Sweeps: a grid of RunConfigs times chunks of seeds = tasks with stable ids, run resumably.

A sweep is `base` options, a `grid` (option -> list of values; the sweep is their Cartesian
product) and `seed_chunk` (seeds per task). Each configuration's seeds are split into chunks;
a task is one configuration x one chunk, run as one vectorized `madlab.runner.run_config`. A
task's id hashes its configuration's run id and its seeds, so the same sweep always makes the
same tasks, and a task's result file tells whether it is done.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import socket
import time
import threading
import tomllib
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from loops import options
from madlab import __version__
from madlab.config import OPTIONS, ConfigError, RunConfig, option_spec
from madlab import store

if TYPE_CHECKING:   # pandas loads where tables are made (fast `madlab --help`)
    import pandas as pd

FORMAT = "madlab-sweep/1"
FIELDS = [s.flat for s in OPTIONS]   # every option's flat name: the keys of [base] and [grid]
NOT_GRIDDED = ("seed_chunk",)   # chunking is a sweep setting ([sweep] seed_chunk / --seed-chunk)


# ---------------------------------------------------------------------------------------------
# values of options

def field_name(key: str) -> str:
    """`n-synth`, `n_synth` or `loop.n_synth` -> `n_synth` (the flat name); ConfigError for a
    key that names no option."""
    return option_spec(key).flat


def coerce(name: str, value: Any) -> Any:
    """A typed value (TOML, Python) of option `name` in its canonical form (3 -> 3.0 for a float
    option, so omega = 3 and 3.0 are one run); validate() refuses a wrong type later."""
    return options.coerce(option_spec(name), value)


def parse_values(name: str, text: str) -> list:
    """A command-line value: a comma-separated list of grid values. List-valued options (metric)
    take the whole list as one value."""
    spec = option_spec(name)
    if spec.kind is list:
        return [options.parse(spec, text)]
    parts = [p for p in (s.strip() for s in str(text).split(",")) if p]
    if not parts:
        raise ConfigError(f"{spec.flag} needs a value")
    return [options.parse(spec, p) for p in parts]


# ---------------------------------------------------------------------------------------------
# the sweep specification

@dataclass
class SweepSpec:
    name: str = "sweep"                              # shown in progress and status
    base: dict[str, Any] = field(default_factory=dict)    # fixed options, by flat name
    grid: dict[str, list] = field(default_factory=dict)   # option -> values (Cartesian product)
    seed_chunk: int | None = None                    # seeds per task; None = RunConfig's

    @classmethod
    def from_dict(cls, data: dict, source: str = "sweep") -> "SweepSpec":
        unknown = sorted(set(data) - {"sweep", "base", "grid"})
        if unknown:
            raise ConfigError(f"{source}: unknown table(s) {', '.join(unknown)}; a sweep file has "
                              "[sweep], [base] and [grid]")
        head = dict(data.get("sweep", {}))
        bad = sorted(set(head) - {"name", "seed_chunk"})
        if bad:
            raise ConfigError(f"{source}: unknown [sweep] key(s) {', '.join(bad)}; use name, seed_chunk")
        spec = cls(name=str(head.get("name", cls.name)))
        for key, value in dict(data.get("base", {})).items():
            name = field_name(key)
            spec.base[name] = coerce(name, value)
        for key, values in dict(data.get("grid", {})).items():
            name = field_name(key)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{source}: [grid] {key} must be a non-empty list of values")
            if name in spec.base:
                raise ConfigError(f"{source}: {key} is in both [base] and [grid]")
            spec.grid[name] = [coerce(name, v) for v in values]
        chunk = head.get("seed_chunk", spec.base.pop("seed_chunk", None))
        if "seed_chunk" in spec.grid:
            raise ConfigError(f"{source}: seed_chunk cannot be gridded; set it in [sweep]")
        spec.seed_chunk = None if chunk is None else coerce("seed_chunk", chunk)
        return spec

    @classmethod
    def from_toml(cls, path: Path) -> "SweepSpec":
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"sweep file {path} does not exist")
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"sweep file {path} is not valid TOML: {err}")
        spec = cls.from_dict(data, source=str(path))
        if "name" not in data.get("sweep", {}):
            spec.name = path.stem
        return spec

    def override(self, values: dict[str, list]) -> "SweepSpec":
        """Command-line options on top of the file: one value fixes an option, several grid it."""
        spec = SweepSpec(self.name, dict(self.base), dict(self.grid), self.seed_chunk)
        for name, vals in values.items():
            spec.base.pop(name, None)
            spec.grid.pop(name, None)
            if name == "seed_chunk":
                if len(vals) != 1:
                    raise ConfigError("--seed-chunk takes one value (seeds per task), not a list")
                spec.seed_chunk = vals[0]
            elif len(vals) == 1:
                spec.base[name] = vals[0]
            else:
                spec.grid[name] = list(vals)
        return spec

    def to_dict(self) -> dict:
        return {"sweep": {"name": self.name, "seed_chunk": self.seed_chunk},
                "base": dict(self.base), "grid": dict(self.grid)}

    def points(self) -> list[dict[str, Any]]:
        """Every grid point, in order (the first grid key varies slowest)."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def configs(self) -> list[tuple[dict, RunConfig]]:
        """(grid point, validated RunConfig) for every grid point."""
        out = []
        for point in self.points():
            values = {**self.base, **point}
            if self.seed_chunk is not None:
                values["seed_chunk"] = self.seed_chunk
            try:
                cfg = RunConfig.from_flat(values).validate()
            except ConfigError as err:
                where = ", ".join(f"{k}={v}" for k, v in point.items())
                raise ConfigError(f"{err} (at grid point {where})" if where else str(err))
            out.append((point, cfg))
        return out

    def tasks(self) -> list["Task"]:
        """The sweep's tasks, each configuration's chunks in seed order; a configuration that
        appears twice in the grid (omega = [0, 0.0]) is run once."""
        tasks, seen = [], set()
        for point, cfg in self.configs():
            for task in chunk_tasks(cfg, point):
                if task.id not in seen:
                    seen.add(task.id)
                    tasks.append(task)
        return tasks


# ---------------------------------------------------------------------------------------------
# tasks

@dataclass(frozen=True)
class Task:
    id: str        # stable: hash of the configuration's run id and this chunk's seeds
    run: str       # the configuration's run id: the `run` column of every row it writes
    point: dict    # the grid values of its configuration (for status)
    config: dict   # its RunConfig's options by flat name (RunConfig.flat()): first_seed/seeds are this chunk's

    def run_config(self) -> RunConfig:
        return RunConfig.from_flat(self.config)

    def seeds(self) -> range:
        return range(self.config["first_seed"], self.config["first_seed"] + self.config["seeds"])

    def label(self) -> str:
        where = " ".join(f"{k}={v}" for k, v in self.point.items())
        s = self.seeds()
        return f"{where + ' ' if where else ''}seeds {s.start}-{s.stop - 1}"

    def to_dict(self) -> dict:
        return {"id": self.id, "run": self.run, "point": self.point, "config": self.config}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(id=d["id"], run=d["run"], point=d.get("point", {}), config=d["config"])


def task_id(run: str, first_seed: int, seeds: int) -> str:
    blob = json.dumps({"run": run, "first_seed": first_seed, "seeds": seeds}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def chunk_tasks(cfg: RunConfig, point: dict | None = None) -> list[Task]:
    """`cfg`'s seeds in chunks of cfg.seed_chunk, one task each."""
    run, seeds, tasks = cfg.run_id(), cfg.seed_list(), []
    for start in range(0, len(seeds), cfg.seed_chunk):
        chunk = seeds[start:start + cfg.seed_chunk]
        config = {**cfg.flat(), "first_seed": chunk[0], "seeds": len(chunk), "seed_chunk": len(chunk)}
        tasks.append(Task(task_id(run, chunk[0], len(chunk)), run, dict(point or {}), config))
    return tasks


# ---------------------------------------------------------------------------------------------
# running one task (on a worker)

class Diverged(RuntimeError):
    """A task's distances came out NaN or infinite."""


def check_finite(frame: pd.DataFrame, caught: list) -> None:
    bad = frame[~frame["value"].apply(lambda v: v == v and abs(v) != float("inf"))]
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


# a pool worker's process-wide settings (set by the pool's initializer, madlab.executors)
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
    started = time.perf_counter()
    checkpoint = None
    if out is not None and (Path(out) / store.MANIFEST).exists():
        lease = WORKER["lease"] if lease is None else lease
        checkpoint = store.TaskCheckpoint(out, task.id, keep=bool(task.config.get("keep_checkpoints")),
                                          lease=store.Lease(out) if lease else None)
    # warnings are process-global: collect them (POT's sign of NaN samples) only in the main
    # thread, never from a threaded worker (dask) where they would mix with other tasks'
    watch = threading.current_thread() is threading.main_thread()
    try:
        with warnings.catch_warnings(record=True) if watch else contextlib.nullcontext([]) as caught:
            if watch:
                warnings.simplefilter("always")
            frame = run_config(task.run_config(), progress=progress, checkpoint=checkpoint)
        check_finite(frame, caught)
        frame["run"] = task.run
        frame.attrs.clear()
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
        store.write_task_result(out, task.id, frame)
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


# ---------------------------------------------------------------------------------------------
# the sweep directory (driver side)

def manifest_for(spec: SweepSpec, tasks: list[Task], kind: str) -> dict:
    return {"format": FORMAT, "madlab": __version__, "kind": kind, "name": spec.name,
            "specs": [spec.to_dict()], "tasks": [t.to_dict() for t in tasks]}


def seed_overlaps(tasks: list[Task]) -> str | None:
    """A (run, seed) covered by two different tasks, described, or None."""
    owner: dict[tuple[str, int], Task] = {}
    for task in tasks:
        for seed in task.seeds():
            other = owner.setdefault((task.run, seed), task)
            if other.id != task.id:
                return (f"seed {seed} of run {task.run} would be run by two tasks (seeds "
                        f"{other.seeds().start}-{other.seeds().stop - 1} and "
                        f"{task.seeds().start}-{task.seeds().stop - 1}): the seed chunk changed; "
                        f"use this directory's seed chunk of {other.config['seed_chunk']}")
    return None


def open_sweep(out: Path, spec: SweepSpec, tasks: list[Task], *, extend: bool = False,
               kind: str = "sweep") -> list[Task]:
    """Check `out` against this sweep and write its manifest; return all the directory's tasks
    (with --extend: the old ones, then the new). Raises ConfigError, writing nothing, if `out`
    holds something else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    manifest = store.read_manifest(out)
    if manifest is not None:
        store.check_format(out, manifest)
    if manifest is None:
        if out.exists() and any(p.name != store.LOCK for p in out.iterdir()) and not (out / store.CONFIG).exists():
            raise ConfigError(f"--out {out} is not empty and holds no madlab sweep; choose another --out")
        problem = seed_overlaps(tasks)
        if problem:
            raise ConfigError(problem)
        store.write_manifest(out, manifest_for(spec, tasks, kind))
        return tasks
    held = [Task.from_dict(t) for t in manifest["tasks"]]
    held_ids, new_ids = {t.id for t in held}, {t.id for t in tasks}
    if held_ids == new_ids:
        return held
    added = [t for t in tasks if t.id not in held_ids]
    problem = seed_overlaps(held + added)
    if problem:
        raise ConfigError(f"{out}: {problem}")
    if not extend:
        missing = len(held_ids - new_ids)
        what = "run" if manifest.get("kind") == "run" and kind == "run" else "sweep"
        raise ConfigError(f"--out {out} already holds a different {what} ({len(held)} tasks; this one "
                          f"has {len(added)} new and lacks {missing} of them); rerun the same "
                          f"command to resume, add --extend to add the new tasks, or choose "
                          f"another --out")
    manifest["tasks"] = [t.to_dict() for t in held + added]
    manifest["specs"] = manifest.get("specs", []) + [spec.to_dict()]
    store.write_manifest(out, manifest)
    return held + added


def load_tasks(out: Path) -> tuple[dict, list[Task]]:
    manifest = store.read_manifest(out)
    if manifest is None:
        raise ConfigError(f"{out} holds no madlab sweep ({store.MANIFEST} not found)")
    return manifest, [Task.from_dict(t) for t in manifest["tasks"]]


def states(out: Path, tasks: list[Task]) -> dict[str, str]:
    return {t.id: store.task_state(out, t.id) for t in tasks}


def merge(out: Path, tasks: list[Task]) -> int:
    """Write `out/results.parquet` from every finished task (manifest order); rows merged."""
    return store.merge_task_results(out, [t.id for t in tasks])


def run_sweep(out: Path, tasks: list[Task], executor, *,
              on_start: Callable[[list[Task]], None] | None = None,
              on_done: Callable[[dict], None] | None = None,
              on_step: Callable[[int], None] | None = None,
              lock: store.SweepLock | None = None) -> dict[str, int]:
    """Run every task of `tasks` not yet done in `out` (failed ones are retried) with
    `executor`, then merge all finished tasks into `out/results.parquet`. Holds the sweep's lock
    throughout (`lock`: one the caller already holds). Returns counts of done / failed / pending
    tasks and merged rows. On a signal the executor stops its workers, the tasks it was running
    lose their running marks and the exception goes on (their finished generations stay on disk)."""
    out = Path(out)
    with contextlib.nullcontext(lock) if lock is not None else store.SweepLock(out):
        store.remove_stale_temporaries(out)
        before = states(out, tasks)
        todo = [t for t in tasks if before[t.id] != "done"]
        store.clear_running(out, [t.id for t in todo])
        if on_start is not None:
            on_start(todo)
        try:
            if todo:
                executor.run(out, todo, on_done or (lambda outcome: None), on_step)
        except BaseException:
            store.clear_running(out, [t.id for t in todo])
            raise
        after = states(out, tasks)
        if needs_merge(out, tasks, after):
            merge(out, tasks)
    counts = {s: sum(1 for v in after.values() if v == s) for s in ("done", "failed", "pending")}
    rows = store.merged_rows(out)
    return {**counts, "rows": rows, "skipped": len(tasks) - len(todo)}


def generations_done(out: Path, tasks: list[Task]) -> int:
    """Generations finished so far over `tasks`: all of a done task's, a running or stopped
    one's checkpointed ones."""
    return sum(t.config["gens"] if store.task_state(out, t.id) == "done"
               else store.checkpointed_generations(out, t.id) for t in tasks)


def needs_merge(out: Path, tasks: list[Task], state: dict[str, str] | None = None) -> bool:
    """True unless `out/results.parquet` holds exactly the finished tasks."""
    state = state or states(out, tasks)
    done = [t.id for t in tasks if state[t.id] == "done"]
    return store.merged_tasks(out) != done
