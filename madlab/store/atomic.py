"""Atomic writes and strict JSON: what every file of a run or sweep folder is written with.

A file is written to a temporary file in its folder, fsynced and renamed over its name, so a
reader sees the old file or the new one, never a part; a failing write (disk full, read-only,
permissions) comes out as a DiskError naming the file.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

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


def discard(path: Path) -> None:
    """Remove `path` if it is there."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
