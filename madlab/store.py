"""Run and sweep directories on disk: configs, per-task Parquet and one merged table, all atomic.

A sweep directory (a `madlab run` directory is a one-configuration sweep) holds
  sweep.json               the manifest: every task's id, run id, grid point and options (flat names)
  tasks/<id>.parquet       a finished task's rows (written to a temporary file, then renamed)
  tasks/<id>.error.json    a failed task's error (removed when a rerun succeeds)
  tasks/<id>.running       a task a worker has started (pid, host); gone once it is recorded
  results.parquet          every finished task's rows merged: `pd.read_parquet(path)` loads it,
                           one row per (run, seed, generation, metric)
  config.json              (runs only) the fully resolved RunConfig (RunConfig.to_dict(): the run's
                           and the active backend's options, nested), run id and madlab version
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from madlab import __version__
from madlab.config import ConfigError, RunConfig

CONFIG = "config.json"
RESULTS = "results.parquet"
MANIFEST = "sweep.json"
TASKS = "tasks"
LOCK = ".lock"
MERGED_KEY = b"madlab.tasks"      # results.parquet metadata: the task ids merged into it

if TYPE_CHECKING:   # pandas and pyarrow load where tables are read or written (fast `madlab --help`)
    import pandas as pd
    import pyarrow as pa


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()     # what open() would give; mkstemp alone gives 0600


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary path in `path`'s folder to write; then fsync it and rename it over
    `path` (readers see the old file or the new one, never a part). On error nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`data` to `path` via a temporary file and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def atomic_write_parquet(frame: pd.DataFrame | pa.Table, path: Path) -> None:
    """`frame` (pandas or pyarrow) to Parquet at `path` via a temporary file and a rename."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        if isinstance(frame, pa.Table):
            pq.write_table(frame, tmp)
        else:
            frame.to_parquet(tmp, index=False)


def config_record(cfg: RunConfig) -> dict:
    return {"run": cfg.run_id(), "madlab": __version__, "config": cfg.to_dict()}


def written_by_0_1(record: dict) -> bool:
    """Whether a config.json or sweep.json record was written by madlab 0.1 (one flat config of
    every backend's options, run ids hashed from it)."""
    return str(record.get("madlab", "0.1")).startswith("0.1")


def check_format(out: Path, record: dict) -> None:
    """Refuse (one line, nothing written) to resume a directory madlab 0.1 wrote: its run and
    task ids were hashed from the old flat config, so this version would run every task again
    beside the old ones."""
    if written_by_0_1(record):
        raise ConfigError(f"--out {out} was written by madlab {record.get('madlab', '0.1')}, whose run "
                          f"ids this version ({__version__}) does not reproduce (options are now grouped by "
                          "component); it cannot resume there: choose another --out (madlab report and "
                          "madlab status still read it)")


def check_run_dir(out: Path, cfg: RunConfig) -> bool:
    """True if `out` already holds this run's finished results; raise ConfigError if it holds
    anything else. Writes nothing."""
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    config_path = out / CONFIG
    if not config_path.exists():
        if (out / MANIFEST).exists():
            raise ConfigError(f"--out {out} holds a madlab sweep, not a single run; choose another --out")
        if any(out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no madlab run; choose another --out")
        return False
    try:
        stored = json.loads(config_path.read_text())
        check_format(out, stored)
        held = RunConfig.from_dict(stored["config"]).run_id()
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--out {out} holds an unreadable {CONFIG} ({err}); choose another --out")
    if held != cfg.run_id():
        raise ConfigError(f"--out {out} already holds a different run (run {held}, this one is "
                          f"{cfg.run_id()}); choose another --out")
    return (out / RESULTS).exists()


def write_config(out: Path, cfg: RunConfig) -> None:
    atomic_write_bytes(Path(out) / CONFIG,
                       json.dumps(config_record(cfg), indent=2, sort_keys=True).encode())


def write_results(out: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(frame, Path(out) / RESULTS)


def load_results(out: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(out) / RESULTS
    if not path.exists():
        raise ConfigError(f"{out} holds no {RESULTS}")
    return pd.read_parquet(path)


# ---------------------------------------------------------------------------------------------
# sweeps: manifest, per-task records, merged table, one driver at a time

def read_manifest(out: Path) -> dict | None:
    """The sweep manifest of `out`, or None if it has none; ConfigError if it is unreadable."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        manifest["tasks"]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{out} holds an unreadable {MANIFEST} ({err}); choose another --out")
    return manifest


def write_manifest(out: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(out) / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())


def task_paths(out: Path, task_id: str) -> dict[str, Path]:
    """Where task `task_id` of sweep `out` keeps its result, its failure and its running marker."""
    folder = Path(out) / TASKS
    return {"done": folder / f"{task_id}.parquet", "failed": folder / f"{task_id}.error.json",
            "running": folder / f"{task_id}.running"}


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def mark_running(out: Path, task_id: str) -> None:
    """Note that this process has started the task (read back only to tell which tasks a dead
    worker was running)."""
    path = task_paths(out, task_id)["running"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}))


def write_task_result(out: Path, task_id: str, frame: pd.DataFrame) -> None:
    """The task's rows, atomically; a stale failure record of an earlier try is removed after."""
    paths = task_paths(out, task_id)
    atomic_write_parquet(frame, paths["done"])
    _unlink(paths["failed"])
    _unlink(paths["running"])


def write_task_failure(out: Path, task_id: str, record: dict) -> None:
    paths = task_paths(out, task_id)
    atomic_write_bytes(paths["failed"], json.dumps(record, indent=1, sort_keys=True, default=str).encode())
    _unlink(paths["running"])


def task_state(out: Path, task_id: str) -> str:
    """done (its rows are on disk) | failed (its error is) | pending (neither yet)."""
    paths = task_paths(out, task_id)
    if paths["done"].exists():
        return "done"
    if paths["failed"].exists():
        return "failed"
    return "pending"


def is_running(out: Path, task_id: str) -> bool:
    return task_paths(out, task_id)["running"].exists()


def clear_running(out: Path, task_ids: Iterable[str]) -> None:
    for task_id in task_ids:
        _unlink(task_paths(out, task_id)["running"])


def read_failure(out: Path, task_id: str) -> dict | None:
    path = task_paths(out, task_id)["failed"]
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as err:
        return {"error": f"unreadable failure record ({err})"}


def remove_stale_temporaries(out: Path, older_than_s: float = 300.0) -> int:
    """Temporary files left by a process killed mid-write (never renamed, so never read)."""
    folder, removed = Path(out) / TASKS, 0
    if not folder.exists():
        return 0
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed


def merge_task_results(out: Path, task_ids: Iterable[str]) -> int:
    """Concatenate the finished tasks' tables in `task_ids` order into `out/results.parquet`
    (atomically); returns the number of rows. Columns missing from some tasks are filled with
    nulls."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    merged = [t for t in task_ids if task_paths(out, t)["done"].exists()]
    tables = [pq.read_table(task_paths(out, t)["done"]) for t in merged]
    if not tables:
        return 0
    table = pa.concat_tables(tables, promote_options="permissive")
    metadata = {**(tables[0].schema.metadata or {}), MERGED_KEY: json.dumps(merged).encode()}
    atomic_write_parquet(table.replace_schema_metadata(metadata), Path(out) / RESULTS)
    return table.num_rows


def merged_tasks(out: Path) -> list[str] | None:
    """The task ids `out/results.parquet` was merged from (None: no merged table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out) / RESULTS
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (FileNotFoundError, pa.ArrowInvalid):
        return None
    return json.loads(metadata[MERGED_KEY]) if MERGED_KEY in metadata else None


class SweepLock:
    """One driver per sweep directory: an exclusive `flock` on `out/.lock`, released by the
    kernel when its holder exits, even by SIGKILL."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.file = None

    def __enter__(self) -> "SweepLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ConfigError(f"{self.path.parent} is being run by another madlab process ({holder}); "
                              "wait for it to finish or choose another --out")
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def is_locked(out: Path) -> bool:
    """True while some process holds the sweep's lock (a sweep is running there)."""
    path = Path(out) / LOCK
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def merged_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    path = Path(out) / RESULTS
    return pq.read_metadata(path).num_rows if path.exists() else 0
