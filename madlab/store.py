"""Run and sweep directories on disk: configs, per-task Parquet and one merged table, all atomic.

A sweep directory (a `madlab run` directory is a one-configuration sweep) holds
  sweep.json               the manifest: every task's id, run id, grid point and options (flat names)
  tasks/<id>.parquet       a finished task's rows (written to a temporary file, then renamed)
  tasks/<id>.error.json    a failed task's error (removed when a rerun succeeds)
  tasks/<id>.running       a task a worker has started (pid, host); gone once it is recorded
  tasks/<id>.ckpt/         an unfinished task's per-generation checkpoint (TaskCheckpoint): each
                           finished generation's rows and what the next generation needs; removed
                           once the task is recorded, unless kept (--keep-checkpoints)
  results.parquet          every finished task's rows merged: `pd.read_parquet(path)` loads it,
                           one row per (run, seed, generation, metric)
  config.json              (runs only) the fully resolved RunConfig (RunConfig.to_dict(): the run's
                           and the active backend's options, nested), run id and madlab version
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import math
import os
import re
import socket
import tempfile
import time
import uuid
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
CHECKPOINT = ".ckpt"              # tasks/<id>.ckpt/: a running task's finished generations
MERGED_KEY = b"madlab.tasks"      # results.parquet metadata: the task ids merged into it
PROVENANCE_KEY = b"madlab.provenance"   # a task file's metadata: where and by what it was computed

if TYPE_CHECKING:   # pandas and pyarrow load where tables are read or written (fast `madlab --help`)
    import pandas as pd
    import pyarrow as pa


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()     # what open() would give; mkstemp alone gives 0600


class DiskError(OSError):
    """Writing a file of a run or sweep directory failed (disk full, read-only, permissions): an
    environment failure, reported as one line naming the path (exit status 1)."""


def disk_error(path: Path, err: OSError) -> DiskError:
    return DiskError(err.errno, f"cannot write {path}: {err.strerror or err}")


@contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """Yield a temporary path in `path`'s folder to write; then fsync it and rename it over
    `path` (readers see the old file or the new one, never a part). On error nothing is left;
    an OSError comes out as a DiskError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except DiskError:
        raise
    except OSError as err:
        raise disk_error(path, err) from err
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, DiskError):
            raise disk_error(path, err) from err
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


def json_safe(value):
    """`value` with every non-finite float written as the string "inf", "-inf" or "nan" (strict
    JSON has no Infinity; float options read these spellings back: loops.options.coerce)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def to_json(value, **options) -> bytes:
    """Strict JSON (no NaN/Infinity tokens) of `value`, as bytes."""
    return json.dumps(json_safe(value), allow_nan=False, **options).encode()


def config_record(cfg: RunConfig, provenance: dict | None = None) -> dict:
    record = {"run": cfg.run_id(), "madlab": __version__, "config": cfg.to_dict()}
    if provenance is not None:
        record["provenance"] = provenance
    return record


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


def folder_kind(out: Path, manifest: dict | None = None) -> str | None:
    """run | sweep | None: what made the folder (the manifest's kind; a folder written before kinds
    were recorded is a run if it holds a config.json)."""
    manifest = read_manifest(out) if manifest is None else manifest
    if manifest is None:
        return "run" if (Path(out) / CONFIG).exists() else None
    kind = manifest.get("kind")
    return kind if kind in ("run", "sweep") else "run" if (Path(out) / CONFIG).exists() else "sweep"


def check_kind(out: Path, manifest: dict, kind: str) -> None:
    """Refuse (one line) a `madlab sweep` on a run folder or a `madlab run` on a sweep folder."""
    held = folder_kind(out, manifest)
    if held == kind:
        return
    if held == "run":
        raise ConfigError(f"--out {out} is a madlab run folder (made by madlab run); resume it with "
                          "madlab run and the same options, or choose another --out for this sweep")
    raise ConfigError(f"--out {out} is a madlab sweep folder (made by madlab sweep); resume it with "
                      "madlab sweep and the same grid, or choose another --out for this run")


def check_out(out: Path) -> None:
    """ConfigError for an --out that can never be a folder: a dangling symbolic link, a file."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; "
                          "create that folder or choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")


def check_run_dir(out: Path, cfg: RunConfig) -> bool:
    """True if `out` already holds this run's finished results; raise ConfigError if it holds
    anything else. Writes nothing."""
    out = Path(out)
    check_out(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    config_path = out / CONFIG
    manifest = read_manifest(out)
    if manifest is not None:
        check_kind(out, manifest, "run")
    if not config_path.exists():
        if manifest is not None and manifest.get("tasks"):
            raise ConfigError(f"--out {out} is a madlab run folder whose {CONFIG} is missing; choose "
                              "another --out (madlab report and madlab status still read it)")
        if any(p.name != LOCK for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no madlab run; choose another --out")
        return False
    try:
        stored = json.loads(config_path.read_text())
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise ValueError("it is not a madlab config record")
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


def write_config(out: Path, cfg: RunConfig, provenance: dict | None = None) -> None:
    atomic_write_bytes(Path(out) / CONFIG, to_json(config_record(cfg, provenance), indent=2, sort_keys=True))


def write_results(out: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(frame, Path(out) / RESULTS)


def load_results(out: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(out) / RESULTS
    if not path.exists():
        raise ConfigError(f"{out} holds no {RESULTS}")
    return pd.read_parquet(path)


# ---------------------------------------------------------------------------------------------
# verified files: what a task file or a checkpoint generation belongs to, and a digest of it

IDENTITY_KEY = "madlab.identity"      # Parquet key-value metadata of task and checkpoint-rows files
TASK_FORMAT = "madlab-task/1"
CHECKPOINT_FORMAT = "madlab-checkpoint/1"


class Unverified(Exception):
    """A file madlab wrote and reads back is not what it should be (torn, foreign, changed); the
    message is a few words that follow the file's path."""


def _digest(data: bytes, schema: "pa.Schema") -> str:
    """SHA-256 of a Parquet file's data region (every page and page header, all bytes before the
    footer) and of its column names and types (which live in the footer)."""
    h = hashlib.sha256(data)
    h.update(json.dumps([[f.name, str(f.type)] for f in schema]).encode())
    return h.hexdigest()


def frame_identity(frame: "pd.DataFrame") -> dict:
    """What a table of rows belongs to, read off the rows themselves (run, seed range)."""
    runs = sorted(frame["run"].astype(str).unique()) if "run" in frame and len(frame) else []
    seeds = sorted(int(s) for s in frame["seed"].unique()) if "seed" in frame and len(frame) else []
    identity = {"run": runs[0] if len(runs) == 1 else None}
    if seeds:
        identity |= {"first_seed": seeds[0], "seeds": len(seeds)}
    if "generation" in frame and len(frame):
        identity["gens"] = int(frame["generation"].max())
    return identity


def verified_parquet_bytes(frame: "pd.DataFrame | pa.Table", identity: dict) -> bytes:
    """`frame` as Parquet bytes whose footer carries `identity`, its row count and the SHA-256 of
    its data region (_digest): written once; the digest is taken after the row group is on the
    buffer, before the footer that holds it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    buffer = io.BytesIO()
    writer = pq.ParquetWriter(buffer, table.schema)
    try:
        writer.write_table(table)
        digest = _digest(buffer.getvalue(), table.schema)
        writer.add_key_value_metadata({IDENTITY_KEY: to_json({**identity, "rows": table.num_rows,
                                                              "sha256": digest}, sort_keys=True).decode()})
    finally:
        writer.close()
    return buffer.getvalue()


def read_identity(path: Path) -> dict | None:
    """The identity a verified file's footer carries (None: none, or the footer does not read)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path).metadata or {}
        return json.loads(metadata[IDENTITY_KEY.encode()]) if IDENTITY_KEY.encode() in metadata else None
    except Exception:  # noqa: BLE001 - missing, torn or not Parquet
        return None


def read_verified(path: Path, expect: dict, content: dict | None = None) -> "tuple[pa.Table, dict | None]":
    """Read a task or checkpoint-rows file and check it before it is trusted: the whole file is
    there (both Parquet magics, a footer that parses), it belongs where it lies (every key of
    `expect` equals what its footer records: task id, run id, seeds, generation, rows, format), its
    data region and schema match the SHA-256 written with it, and its rows are the rows `expect`
    names (run column, seed range, generations, count: check_rows over `content`, default
    `expect`; this last check also covers files written before madlab recorded identities). Returns (table, recorded identity or None); raises
    Unverified with a few words saying what is wrong."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        blob = Path(path).read_bytes()
    except OSError as err:
        raise Unverified(f"cannot be read ({err.strerror or err})") from None
    footer = int.from_bytes(blob[-8:-4], "little") if len(blob) >= 12 else -1
    end = len(blob) - 8 - footer
    if footer < 0 or blob[:4] != b"PAR1" or blob[-4:] != b"PAR1" or end < 4:
        raise Unverified("is not a whole Parquet file (torn or truncated)")
    try:
        metadata = pq.read_metadata(pa.BufferReader(blob))
        schema = pq.read_schema(pa.BufferReader(blob))
        kv = metadata.metadata or {}
        identity = json.loads(kv[IDENTITY_KEY.encode()]) if IDENTITY_KEY.encode() in kv else None
        if identity is not None and not isinstance(identity, dict):
            raise ValueError("identity is not a record")
    except Exception as err:  # noqa: BLE001 - a footer that does not parse
        raise Unverified(f"does not read back ({_first_line(err)})") from None
    if identity is not None:
        for key, want in expect.items():
            if identity.get(key) != want:
                raise Unverified(f"belongs elsewhere (its {key} is {identity.get(key)!r}, not {want!r})")
        if identity.get("rows") != metadata.num_rows:
            raise Unverified(f"holds {metadata.num_rows} rows, its footer says it was written with "
                             f"{identity.get('rows')}")
        if _digest(blob[:end], schema) != identity.get("sha256"):
            raise Unverified("fails its SHA-256 checksum (its bytes changed after it was written)")
    try:
        table = pq.read_table(pa.BufferReader(blob))
    except Exception as err:  # noqa: BLE001 - a corrupt page
        raise Unverified(f"does not read back ({_first_line(err)})") from None
    check_rows(table, expect if content is None else content)
    return table, identity


def check_rows(table: "pa.Table", expect: dict) -> None:
    """Unverified unless `table`'s rows are those `expect` names (only the keys it has): one run
    id, the seeds first_seed .. first_seed + seeds - 1, generations 1..gens (or only `generation`),
    `rows` rows."""
    if "rows" in expect and table.num_rows != expect["rows"]:
        raise Unverified(f"holds {table.num_rows} rows, not the task's {expect['rows']}")

    def values(column: str) -> list | None:
        return sorted(set(table.column(column).to_pylist())) if column in table.column_names else None

    if "run" in expect and values("run") not in (None, [expect["run"]]):
        raise Unverified(f"holds rows of run(s) {', '.join(map(str, values('run')))}, not of run {expect['run']}")
    if "first_seed" in expect and "seeds" in expect:
        want = list(range(expect["first_seed"], expect["first_seed"] + expect["seeds"]))
        found = values("seed")
        if found is not None and found != want:
            raise Unverified(f"holds seeds {_span(found)}, not the task's seeds {_span(want)}")
    want = ([expect["generation"]] if "generation" in expect else
            list(range(1, expect["gens"] + 1)) if "gens" in expect else None)
    found = values("generation") if want is not None else None
    if found is not None and found != want:
        raise Unverified(f"holds generations {_span(found)}, not {_span(want)}")


def _span(values: list) -> str:
    if not values:
        return "none"
    if values == list(range(values[0], values[0] + len(values))):
        return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
    return ",".join(map(str, values[:6])) + ("..." if len(values) > 6 else "")


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
    atomic_write_bytes(Path(out) / MANIFEST, to_json(manifest, indent=1, sort_keys=True))


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


def write_task_result(out: Path, task_id: str, frame: pd.DataFrame, identity: dict | None = None) -> None:
    """The task's rows, atomically, with what they belong to (`identity`: run, first_seed, seeds,
    gens; default: read off the rows), their SHA-256 (verified_parquet_bytes) and the provenance
    of the process that computed them (frame.attrs["provenance"]) in the file's metadata; a stale
    failure record of an earlier try is removed after."""
    import pyarrow as pa

    paths = task_paths(out, task_id)
    provenance = frame.attrs.get("provenance")
    plain = frame.copy(deep=False)
    plain.attrs = {}                       # pandas would store attrs in its own metadata
    table = pa.Table.from_pandas(plain, preserve_index=False)
    if provenance is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), PROVENANCE_KEY: to_json(provenance)})
    identity = {"format": TASK_FORMAT, "task": task_id, **(identity or frame_identity(frame))}
    atomic_write_bytes(paths["done"], verified_parquet_bytes(table, identity))
    _unlink(paths["failed"])
    _unlink(paths["running"])


def write_task_failure(out: Path, task_id: str, record: dict) -> None:
    paths = task_paths(out, task_id)
    atomic_write_bytes(paths["failed"], to_json(record, indent=1, sort_keys=True, default=str))
    _unlink(paths["running"])


def task_state(out: Path, task_id: str, rows: int | None = None, expect: dict | None = None) -> str:
    """done (its rows are on disk and read back: `rows` of them, when given; a file whose footer
    says it belongs to another task, run or seed range is not) | failed (its error is) | pending
    (neither yet, or a task file that does not read back: it is computed again). Reads footers
    only: run_sweep verifies every byte (check_task_file) before it trusts a file."""
    paths = task_paths(out, task_id)
    if paths["done"].exists():
        found, identity = _footer(paths["done"])
        owned = identity is None or all(identity.get(k) == v for k, v in
                                        {"format": TASK_FORMAT, "task": task_id, **(expect or {})}.items()
                                        if k != "rows")
        if owned and found is not None and (found == rows if rows is not None else found > 0):
            return "done"
    if paths["failed"].exists():
        return "failed"
    return "pending"


def _footer(path: Path) -> tuple[int | None, dict | None]:
    """(rows, identity) of a Parquet file by its footer; (None, None) if it cannot be read."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_metadata(path)
    except Exception:  # noqa: BLE001 - missing, truncated or not Parquet at all
        return None, None
    try:
        kv = metadata.metadata or {}
        identity = json.loads(kv[IDENTITY_KEY.encode()]) if IDENTITY_KEY.encode() in kv else None
    except ValueError:
        identity = {"format": "unreadable"}
    return metadata.num_rows, identity if isinstance(identity, dict) or identity is None else {"format": "unreadable"}


def readable_rows(path: Path) -> int | None:
    """The rows of a Parquet file by its footer, or None if it cannot be read (missing, torn)."""
    return _footer(path)[0]


def check_task_file(out: Path, task_id: str, expect: dict | None = None) -> str | None:
    """Verify a finished task's file before it is trusted (read_verified: whole, this task's,
    its checksum, its rows; `expect` adds run, first_seed, seeds, gens, rows); if it is not
    right, remove it and say why in a few words that name it (the sweep computes it again)."""
    path = task_paths(out, task_id)["done"]
    if not path.exists():
        return None
    try:
        read_verified(path, {"format": TASK_FORMAT, "task": task_id, **(expect or {})})
        return None
    except Unverified as err:
        _unlink(path)
        return f"{path} {err}: computing it again"


def _first_line(err: BaseException) -> str:
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    return lines[0] if lines else type(err).__name__


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
    """Temporary files left by a process killed mid-write (never renamed, so never read): every one
    at the folder's top level (call it holding the lock), those under tasks/ once `older_than_s`
    old (a worker may be writing them)."""
    folder, removed = Path(out) / TASKS, 0
    for tmp in Path(out).glob(".*.tmp"):      # results, manifest, config: only the lock's holder
        try:                                  # writes them, so any left is a dead driver's
            tmp.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    if not folder.exists():
        return removed
    now = time.time()
    for tmp in [*folder.glob(".*.tmp"), *folder.glob(f"*{CHECKPOINT}/.*.tmp")]:
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

    merged = [t for t in task_ids if readable_rows(task_paths(out, t)["done"])]
    tables = [pq.read_table(task_paths(out, t)["done"]) for t in merged]
    if not tables:
        return 0
    table = pa.concat_tables(tables, promote_options="permissive")
    metadata = {k: v for k, v in (tables[0].schema.metadata or {}).items() if k != PROVENANCE_KEY}
    metadata[MERGED_KEY] = json.dumps(merged).encode()
    atomic_write_parquet(table.replace_schema_metadata(metadata), Path(out) / RESULTS)
    return table.num_rows


def merged_tasks(out: Path) -> list[str] | None:
    """The task ids `out/results.parquet` was merged from (None: no merged table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out) / RESULTS
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    return json.loads(metadata[MERGED_KEY]) if MERGED_KEY in metadata else None


class SweepLock:
    """One driver per sweep directory: an exclusive `flock` on `out/.lock`, released by the
    kernel when its holder exits, even by SIGKILL."""

    def __init__(self, out: Path):
        self.path = Path(out) / LOCK
        self.file = None

    def __enter__(self) -> "SweepLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a+")
        except OSError as err:
            raise disk_error(self.path, err) from err
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip().split(" session ")[0] or "another process"
            self.file.close()
            raise ConfigError(f"{self.path.parent} is being run by another madlab process ({holder}); "
                              "wait for it to finish or choose another --out")
        self.session = uuid.uuid4().hex            # workers' leases compare it (Lease)
        try:
            self.file.seek(0)
            self.file.truncate()
            self.file.write(f"pid {os.getpid()} on {socket.gethostname()} session {self.session}")
            self.file.flush()
        except OSError as err:                     # a full disk at start: name the file
            fcntl.flock(self.file, fcntl.LOCK_UN)
            try:
                self.file.close()
            except OSError:
                pass
            raise disk_error(self.path, err) from err
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


def merged_rows(out: Path) -> int | None:
    """Rows of out/results.parquet: 0 when there is none, None when it does not read back."""
    path = Path(out) / RESULTS
    return readable_rows(path) if path.exists() else 0


# ---------------------------------------------------------------------------------------------
# per-generation checkpoints of a task

class Abandoned(RuntimeError):
    """A worker's driver is gone (or another one took the directory over): stop, write nothing."""


class Lease:
    """A worker's right to write into a sweep directory: the driver that started it still holds the
    directory's lock. Taken when a task starts (it reads the holder's session token from the lock
    file); `check()` raises Abandoned once that driver has exited (the kernel drops its flock, even
    after SIGKILL) or another driver took the lock over."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.session = lock_session(self.out)

    def check(self) -> None:
        if self.session is None or not is_locked(self.out) or lock_session(self.out) != self.session:
            raise Abandoned(f"the madlab process that started this task no longer holds {self.out / LOCK}")


class TaskCheckpoint:
    """`tasks/<id>.ckpt/`: the finished generations of a task that has not finished yet.

        g0003.parquet   generation 3's result rows (every seed and metric, the task file's columns);
                        its footer carries what it belongs to (format, task id, run id, seed range,
                        generation), its SHA-256 and the SHA-256 and tensor shapes of g0003.pt
        g0003.pt        the loop's state after generation 3 (loops.loop.LoopState, torch.save): the
                        synthetic sets the loop kind keeps and, for warm starts, the model G^3 with
                        any optimizer state it carries; written after the rows, so it commits them

    Both are written atomically (temporary file, fsync, rename); the newest committed generation is
    the highest g*.pt, found from the file names alone (no torch). Older states are deleted once a
    newer one is on disk unless `keep`. Before a state is resumed, it and the rows of every
    generation up to it are verified (load): a file that is torn, changed, another task's or of
    other shapes is a generation that did not finish; the task resumes from the newest generation
    whose files all verify, and `problems` says in one line per file what was set aside.

    `expect` names the task (run, first_seed, seeds: a sweep's task_identity); without it only
    the task id is checked."""

    STATE = re.compile(r"g(\d{4,})\.pt$")

    def __init__(self, out: Path, task_id: str, keep: bool = False, lease: Lease | None = None,
                 expect: dict | None = None):
        self.folder = Path(out) / TASKS / f"{task_id}{CHECKPOINT}"
        self.keep = keep
        self.lease = lease
        self.task_id = task_id
        self.expect = {k: v for k, v in (expect or {}).items() if k in ("run", "first_seed", "seeds")}
        self.problems: list[str] = []

    def path(self, generation: int, kind: str) -> Path:
        return self.folder / f"g{generation:04d}.{kind}"

    def generations(self) -> int:
        """The newest committed generation (0: none), from the file names."""
        try:
            names = os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        found = [int(m.group(1)) for n in names if (m := self.STATE.match(n))]
        return max(found, default=0)

    def _rows_expect(self, generation: int) -> dict:
        return {"format": CHECKPOINT_FORMAT, "task": self.task_id, **self.expect, "generation": generation}

    def rows(self, upto: int | None = None) -> "pd.DataFrame | None":
        """The rows of generations 1..upto (default: the newest committed), or None if some are
        missing or do not verify."""
        try:
            return self._verified_rows(self.generations() if upto is None else upto)[0]
        except Unverified:
            return None

    def _verified_rows(self, upto: int) -> "tuple[pd.DataFrame | None, dict | None]":
        """(rows of generations 1..upto, the identity of generation upto's rows file); Unverified
        names the first file that does not verify."""
        import pandas as pd

        if upto == 0:
            return None, None
        frames, identity = [], None
        for t in range(1, upto + 1):
            path = self.path(t, "parquet")
            try:
                expect = self._rows_expect(t)       # the rows' run column is the chunk's own run id
                table, identity = read_verified(path, expect, {k: v for k, v in expect.items() if k != "run"})
            except Unverified as err:
                raise Unverified(f"{path} {err}") from None
            frames.append(table.to_pandas())
        return pd.concat(frames, ignore_index=True), identity

    def _verified_state(self, t: int, identity: dict | None, device: str):
        """Generation t's state, checked against the digest and shapes its rows file recorded."""
        import torch

        path = self.path(t, "pt")
        try:
            blob = path.read_bytes()
        except OSError as err:
            raise Unverified(f"{path} cannot be read ({err.strerror or err})") from None
        if identity is not None and hashlib.sha256(blob).hexdigest() != identity.get("state_sha256"):
            raise Unverified(f"{path} fails the SHA-256 checksum its generation's rows recorded (another "
                             "task's, cut, or changed after it was written)")
        try:
            state = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)
        except Exception as err:  # noqa: BLE001 - a torn or corrupt state
            raise Unverified(f"{path} does not load ({_first_line(err)})") from None
        if getattr(state, "generation", None) != t:
            raise Unverified(f"{path} holds generation {getattr(state, 'generation', None)}, not {t}")
        shapes = state_shapes(state)
        if identity is not None and shapes != identity.get("state_shapes"):
            raise Unverified(f"{path} holds synthetic sets of shapes {shapes}, not "
                             f"{identity.get('state_shapes')}")
        seeds = self.expect.get("seeds")
        if seeds is not None and any(s and s[0] != seeds for s in shapes):
            raise Unverified(f"{path} holds synthetic sets of {shapes[0][0]} seeds, not the task's {seeds}")
        return state

    def load(self, device: str = "cpu") -> "tuple[object, pd.DataFrame] | None":
        """(LoopState, rows of generations 1..t) of the newest generation t whose files all
        verify, or None (start from generation 1). A newer state that does not verify is removed
        and noted in `problems` (one line naming the file)."""
        self.problems = []
        for t in sorted({int(m.group(1)) for n in self._names() if (m := self.STATE.match(n))},
                        reverse=True):
            try:
                rows, identity = self._verified_rows(t)
                return self._verified_state(t, identity, device), rows
            except Unverified as err:
                self.problems.append(str(err))
            _unlink(self.path(t, "pt"))
        return None

    def check(self) -> str | None:
        """Verify the checkpoint as a resume would (load) and set aside what does not verify;
        one line naming the first bad file and where the task goes on from, or None if all is
        well."""
        found = self.load("cpu")
        if not self.problems:
            return None
        where = (f"resuming after generation {found[0].generation}" if found is not None
                 else "computing the task from generation 1")
        return f"{self.problems[0]}: {where}"

    def _names(self) -> list[str]:
        try:
            return os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def save(self, state, rows: "pd.DataFrame") -> None:
        """Commit generation state.generation: its rows (with the state's digest and shapes in
        their footer), then its state; then drop older states."""
        import torch

        t = state.generation
        if self.lease is not None:
            self.lease.check()
        blob = io.BytesIO()                        # serialised first: a full disk is an OSError here
        torch.save(state, blob)
        identity = {**frame_identity(rows), **self.expect, **self._rows_expect(t),
                    "state_sha256": hashlib.sha256(blob.getbuffer()).hexdigest(),
                    "state_shapes": state_shapes(state)}
        identity.pop("gens", None)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path(t, "parquet"), verified_parquet_bytes(rows, identity))
        atomic_write_bytes(self.path(t, "pt"), blob.getbuffer())
        if not self.keep:
            for name in self._names():
                m = self.STATE.match(name)
                if m and int(m.group(1)) < t:
                    _unlink(self.folder / name)

    def clear(self) -> None:
        """Remove the checkpoint (the task is recorded), unless it is kept."""
        if self.keep or not self.folder.exists():
            return
        for name in self._names():
            _unlink(self.folder / name)
        try:
            self.folder.rmdir()
        except OSError:
            pass

    def size(self) -> int:
        """Bytes on disk."""
        return sum((self.folder / n).stat().st_size for n in self._names()
                   if (self.folder / n).is_file())


def state_shapes(state) -> list[list[int]]:
    """The shapes of a LoopState's synthetic sets ([seeds, points, ...] each)."""
    return [list(s.shape) for s in getattr(state, "synthetic", None) or [] if hasattr(s, "shape")]


def checkpointed_generations(out: Path, task_id: str) -> int:
    """Generations of an unfinished task already on disk (0: none): cheap, for progress and status."""
    return TaskCheckpoint(out, task_id).generations()


def lock_session(out: Path) -> str | None:
    """The session token the lock's current holder wrote into `out/.lock`."""
    try:
        text = (Path(out) / LOCK).read_text()
    except OSError:
        return None
    m = re.search(r"session (\S+)", text)
    return m.group(1) if m else None


def partial_rows(out: Path, task_ids: Iterable[str]) -> "tuple[pd.DataFrame | None, str]":
    """Every row on disk so far of the tasks `task_ids`, in their order: a finished task's file,
    else the finished generations of its checkpoint; and a few words saying what was read."""
    import pandas as pd

    frames, done, partial, generations = [], 0, 0, 0
    for task_id in task_ids:
        path = task_paths(out, task_id)["done"]
        if path.exists():
            try:                   # only a file that verifies as this task's (read_verified)
                frames.append(read_verified(path, {"format": TASK_FORMAT, "task": task_id})[0].to_pandas())
                done += 1
                continue
            except Unverified:     # torn, changed or another task's: the sweep recomputes it
                pass
        rows = TaskCheckpoint(out, task_id).rows()
        if rows is not None:
            frames.append(rows)
            partial += 1
            generations += int(rows["generation"].max())
    what = (f"{done} finished task{'s' * (done != 1)}"
            + (f" and {generations} finished generations of {partial} unfinished "
               f"task{'s' * (partial != 1)}" if partial else ""))
    if not frames:
        return None, what
    return pd.concat(frames, ignore_index=True), what


def task_provenance(out: Path, task_id: str) -> dict | None:
    """The provenance a finished task's file carries (None: none, or unreadable)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(task_paths(out, task_id)["done"]).metadata or {}
        return json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else None
    except Exception:  # noqa: BLE001 - missing or torn: no provenance
        return None
