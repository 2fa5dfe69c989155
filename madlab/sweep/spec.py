"""A sweep's specification and its tasks: pure, nothing is run or written.

A sweep is `base` options, a `grid` (option -> list of values; the sweep is their Cartesian
product) and `seed_chunk` (seeds per task). Each configuration's seeds are split into chunks;
a task is one configuration x one chunk, run as one vectorized `madlab.runner.run_config`. A
task's id hashes its configuration's run id and its seeds, so the same sweep always makes the
same tasks, and a task's result file tells whether it is done.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loops import options
from madlab.config import OPTIONS, ConfigError, RunConfig, option_spec

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
