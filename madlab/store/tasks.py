"""A sweep's files: its manifest, each task's result, failure and running mark, the merged table.

Every write is atomic (madlab.store.atomic); a task's result is a verified file
(madlab.store.verified). The driver (madlab.sweep.driver) reads states and merges; workers
(madlab.sweep.worker) mark, record and fail tasks.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from madlab.config import ConfigError
from madlab.store.atomic import atomic_write_bytes, atomic_write_parquet, discard, to_json
from madlab.store.layout import CHECKPOINT, MANIFEST, MERGED_KEY, PROVENANCE_KEY, RESULTS, TASKS, task_paths
from madlab.store.verified import (TASK_FORMAT, Unverified, footer, frame_identity, read_verified,
                                   verified_parquet_bytes)

if TYPE_CHECKING:
    import pandas as pd


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
    discard(paths["failed"])
    discard(paths["running"])


def write_task_failure(out: Path, task_id: str, record: dict) -> None:
    paths = task_paths(out, task_id)
    atomic_write_bytes(paths["failed"], to_json(record, indent=1, sort_keys=True, default=str))
    discard(paths["running"])


def task_state(out: Path, task_id: str, rows: int | None = None, expect: dict | None = None) -> str:
    """done (its rows are on disk and read back: `rows` of them, when given; a file whose footer
    says it belongs to another task, run or seed range is not) | failed (its error is) | pending
    (neither yet, or a task file that does not read back: it is computed again). Reads footers
    only: run_sweep verifies every byte (check_task_file) before it trusts a file."""
    paths = task_paths(out, task_id)
    if paths["done"].exists():
        found, identity = footer(paths["done"])
        owned = identity is None or all(identity.get(k) == v for k, v in
                                        {"format": TASK_FORMAT, "task": task_id, **(expect or {})}.items()
                                        if k != "rows")
        if owned and found is not None and (found == rows if rows is not None else found > 0):
            return "done"
    if paths["failed"].exists():
        return "failed"
    return "pending"


def readable_rows(path: Path) -> int | None:
    """The rows of a Parquet file by its footer, or None if it cannot be read (missing, torn)."""
    return footer(path)[0]


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
        discard(path)
        return f"{path} {err}: computing it again"


def is_running(out: Path, task_id: str) -> bool:
    return task_paths(out, task_id)["running"].exists()


def clear_running(out: Path, task_ids: Iterable[str]) -> None:
    for task_id in task_ids:
        discard(task_paths(out, task_id)["running"])


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


def merged_rows(out: Path) -> int | None:
    """Rows of out/results.parquet: 0 when there is none, None when it does not read back."""
    path = Path(out) / RESULTS
    return readable_rows(path) if path.exists() else 0


def task_provenance(out: Path, task_id: str) -> dict | None:
    """The provenance a finished task's file carries (None: none, or unreadable)."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(task_paths(out, task_id)["done"]).metadata or {}
        return json.loads(metadata[PROVENANCE_KEY]) if PROVENANCE_KEY in metadata else None
    except Exception:  # noqa: BLE001 - missing or torn: no provenance
        return None
