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
import math
import os
import re
import socket
import sys
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
MAX_TASKS = 100_000             # more tasks are refused unless --max-tasks says otherwise (each costs
                                # ~3 KB and ~0.5 ms to plan, a manifest entry and a file)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")   # a sweep's name: one plain folder name


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

def check_name(name: Any, source: str = "sweep") -> str:
    """A sweep's name is one plain folder name (it becomes sweeps/<name> when --out is not given):
    no path separators, no '..', not absolute."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{source}: [sweep] name must be a plain folder name (letters, digits and "
                          f"_ . + = -, no '/' or '..'), got {name!r}")
    return name


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
        for table in ("sweep", "base", "grid"):
            if not isinstance(data.get(table, {}), dict):
                raise ConfigError(f"{source}: [{table}] must be a table of key = value lines, got "
                                  f"{table} = {data[table]!r}")
        head = dict(data.get("sweep", {}))
        bad = sorted(set(head) - {"name", "seed_chunk"})
        if bad:
            raise ConfigError(f"{source}: unknown [sweep] key(s) {', '.join(bad)}; use name, seed_chunk")
        spec = cls(name=check_name(head.get("name", cls.name), source))
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
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))   # a leading BOM is fine
        except FileNotFoundError:
            raise ConfigError(f"sweep file {path} does not exist")
        except IsADirectoryError:
            raise ConfigError(f"sweep file {path} is a directory")
        except UnicodeDecodeError as err:
            raise ConfigError(f"sweep file {path} is not UTF-8 text (byte {err.start}); TOML files are UTF-8")
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"sweep file {path} is not valid TOML: {err}")
        spec = cls.from_dict(data, source=str(path))
        if "name" not in data.get("sweep", {}):
            spec.name = check_name(path.stem, str(path))
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

    def count_tasks(self) -> int:
        """How many tasks the sweep makes, from the sizes of its grid alone (nothing is built):
        grid points x seed chunks (a value listed twice counts twice)."""
        defaults = RunConfig()
        chunk = self.seed_chunk if isinstance(self.seed_chunk, int) and self.seed_chunk > 0 else defaults.seed_chunk
        seeds = self.grid.get("seeds", [self.base.get("seeds", defaults.seeds)])
        points = math.prod(len(v) for k, v in self.grid.items() if k != "seeds")
        return points * sum(math.ceil(s / chunk) if isinstance(s, int) and s > 0 else 1 for s in seeds)

    def tasks(self, limit: int | None = MAX_TASKS) -> list["Task"]:
        """The sweep's tasks, each configuration's chunks in seed order; a configuration that
        appears twice in the grid (omega = [0, 0.0]) is run once. More than `limit` tasks is
        refused before any is built (ConfigError with the count)."""
        count = self.count_tasks()
        if limit is not None and count > limit:
            sizes = " x ".join(f"{len(v)} {k}" for k, v in self.grid.items())
            raise ConfigError(f"this sweep makes {count:,} tasks ({sizes or 'no grid'}, in seed chunks of "
                              f"{self.seed_chunk or RunConfig().seed_chunk}), more than --max-tasks "
                              f"{limit:,}; shrink the grid, raise --seed-chunk, or pass --max-tasks "
                              f"{count} to run it anyway")
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


def configuration_key(task: Task) -> str:
    """What a task's configuration computes, whatever its seeds: its options but the seed range
    and the speed-only ones (runs that differ only in --seeds/--first-seed share it)."""
    cfg = task.run_config()
    identity = {k: v for k, v in cfg.identity().items() if k not in ("seeds", "first_seed")}
    return json.dumps(identity, sort_keys=True, default=str)


def without_held_seeds(held: list[Task], added: list[Task]) -> list[Task]:
    """`added` tasks less the seeds that held tasks of the same configuration but another run id
    already cover (`--extend --seeds 6` after `--seeds 4` runs seeds 4 and 5 only, under the new
    run id, instead of running seeds 0-3 a second time)."""
    covered: dict[str, dict[str, set[int]]] = {}     # configuration -> run id -> seeds
    for task in held:
        covered.setdefault(configuration_key(task), {}).setdefault(task.run, set()).update(task.seeds())
    out = []
    for task in added:
        runs = covered.get(configuration_key(task), {})
        other = set().union(*(seeds for run, seeds in runs.items() if run != task.run))
        seeds = [s for s in task.seeds() if s not in other]   # the same run id: seed_overlaps decides
        if len(seeds) == len(task.seeds()):
            out.append(task)
            continue
        while seeds:                                     # the uncovered seeds, in contiguous runs
            run = [seeds.pop(0)]
            while seeds and seeds[0] == run[-1] + 1:
                run.append(seeds.pop(0))
            config = {**task.config, "first_seed": run[0], "seeds": len(run)}
            out.append(Task(task_id(task.run, run[0], len(run)), task.run, task.point, config))
    return out


def open_sweep(out: Path, spec: SweepSpec, tasks: list[Task], *, extend: bool = False,
               kind: str = "sweep", write: bool = True) -> list[Task]:
    """Check `out` against this sweep and write its manifest; return all the directory's tasks
    (with --extend: the old ones, then the new). Raises ConfigError, writing nothing, if `out`
    holds something else. With write=False it only checks (before the sweep's lock is taken).

    Tasks already in the manifest keep their seeds and chunking, but take this command's device
    and keep_checkpoints: they never change a number."""
    out = Path(out)
    store.check_out(out)
    manifest = store.read_manifest(out)
    if manifest is not None:
        store.check_format(out, manifest)
        store.check_kind(out, manifest, kind)
    if manifest is None:
        if out.exists() and any(p.name != store.LOCK for p in out.iterdir()) and not (out / store.CONFIG).exists():
            raise ConfigError(f"--out {out} is not empty and holds no madlab sweep; choose another --out")
        problem = seed_overlaps(tasks)
        if problem:
            raise ConfigError(problem)
        if write:
            store.write_manifest(out, manifest_for(spec, tasks, kind))
        return tasks
    current = {t.id: t for t in tasks}
    recorded = [Task.from_dict(t) for t in manifest["tasks"]]
    for t in recorded:
        if t.id in current and (problem := changed_results(t.config, current[t.id].config)):
            raise ConfigError(f"--out {out} {problem}")
    held = [Task(t.id, t.run, t.point, {**t.config, **_speed(current[t.id].config)}) if t.id in current else t
            for t in recorded]
    held_ids, new_ids = {t.id for t in held}, {t.id for t in tasks}
    if write and [t.config for t in held] != [t.config for t in recorded]:
        manifest["tasks"] = [t.to_dict() for t in held]     # the settings this command applies
        store.write_manifest(out, manifest)
    if held_ids == new_ids:
        return held
    added = without_held_seeds(held, [t for t in tasks if t.id not in held_ids])
    added = [t for t in added if t.id not in held_ids]
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
    if write and added:
        manifest["tasks"] = [t.to_dict() for t in held + added]
        manifest["specs"] = manifest.get("specs", []) + [spec.to_dict()]
        store.write_manifest(out, manifest)
    return held + added


SETTINGS = ("device", "keep_checkpoints", "save_samples", "samples_dir", "edm_checkpoints")
RESULT_SETTINGS = {"tails": True}    # outside the run id, but they change which rows are recorded


def _speed(config: dict) -> dict:
    """The options of a task's config that change speed or where files go, not its numbers: a
    rerun applies this command's."""
    return {k: config[k] for k in SETTINGS if k in config}


def changed_results(held: dict, new: dict) -> str | None:
    """Why a held task cannot be resumed with `new`'s options (a setting outside the run id that
    changes its rows differs), or None."""
    for key, default in RESULT_SETTINGS.items():
        was, now = held.get(key, default), new.get(key, default)
        if was != now:
            return (f"was run with {_as_flag(key, was)}, this command has {_as_flag(key, now)}, which "
                    f"changes the rows recorded; rerun with {_as_flag(key, was)} to resume it, or "
                    "choose another --out")
    return None


def _as_flag(key: str, value) -> str:
    """An option's value as it is spelled on the command line (--tails / --no-tails)."""
    flag = option_spec(key).flag
    if isinstance(value, bool):
        return flag if value else f"--no-{flag.removeprefix('--')}"
    return f"{flag} {value}"


def begin_session(out: Path, tasks: list[Task]) -> dict:
    """Note this command in the manifest's `sessions` (its provenance: madlab.provenance), with a
    warning on stderr when the code differs from the session before it; call under the lock."""
    from madlab.provenance import code_of, provenance, same_code

    manifest = store.read_manifest(out) or {}
    record = provenance(tasks[0].config.get("device", "cpu") if tasks else "cpu")
    sessions = manifest.setdefault("sessions", [])
    if sessions:
        last, differs = sessions[-1], not same_code(sessions[-1], record)
    else:                 # written before sessions were recorded: only its version is known
        last = {"madlab": manifest.get("madlab")}
        differs = bool(manifest.get("tasks")) and last["madlab"] != record["madlab"]
    if differs:
        print(f"madlab: warning: {out} was last run by {code_of(last)}, this is {code_of(record)}: "
              "its finished tasks and generations are kept, so the results may mix both",
              file=sys.stderr, flush=True)
    sessions.append({**record, "ended": None, "outcome": None})
    store.write_manifest(out, manifest)
    return record


def end_session(out: Path, record: dict, outcome: str) -> None:
    """Close this command's session: its end time and outcome (done, failed, interrupted, error)."""
    from madlab.provenance import now

    manifest = store.read_manifest(out)
    if manifest is None:
        return
    for session in reversed(manifest.get("sessions", [])):
        if session.get("started") == record["started"] and session.get("command") == record["command"]:
            session.update(ended=now(), outcome=outcome)
            store.write_manifest(out, manifest)
            return


def load_tasks(out: Path) -> tuple[dict, list[Task]]:
    manifest = store.read_manifest(out)
    if manifest is None:
        raise ConfigError(f"{out} holds no madlab sweep ({store.MANIFEST} not found)")
    return manifest, [Task.from_dict(t) for t in manifest["tasks"]]


def expected_rows(task: Task) -> int:
    """Rows of a finished task: one per seed, generation and recorded metric (the rule of
    RunConfig.recorded_metrics, applied to the flat config: states() runs it for every task)."""
    from madlab.config import recorded_metrics

    config = task.config
    metrics = config.get("metric") or [None]
    if metrics != [None]:
        metrics = recorded_metrics(config.get("backend", "toy-ddpm"), metrics, config.get("tails", True))
    return config["seeds"] * config["gens"] * len(metrics)


def task_identity(task: Task) -> dict:
    """What a task's files must say they belong to (madlab.store.read_verified): its run id, its
    seed range and its generations (the task id is checked beside it)."""
    return {"run": task.run, "first_seed": task.config["first_seed"], "seeds": task.config["seeds"],
            "gens": task.config["gens"]}


def states(out: Path, tasks: list[Task]) -> dict[str, str]:
    """done | failed | pending per task id; a task file that does not hold the task's rows (torn,
    truncated, or another task's by its footer) counts as pending."""
    return {t.id: store.task_state(out, t.id, expected_rows(t), task_identity(t)) for t in tasks}


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
        for task in tasks:          # verify every file read back: a bad one is named and redone
            expect = {**task_identity(task), "rows": expected_rows(task)}
            if problem := store.check_task_file(out, task.id, expect):
                print(f"madlab: task {task.id}: {problem}", file=sys.stderr, flush=True)
                before[task.id] = "pending" if before[task.id] == "done" else before[task.id]
            if before[task.id] != "done" and (problem := store.TaskCheckpoint(
                    out, task.id, keep=bool(task.config.get("keep_checkpoints")),
                    expect=task_identity(task)).check()):
                print(f"madlab: task {task.id}: {problem}", file=sys.stderr, flush=True)
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
