"""Verified files: a task file or a checkpoint generation's rows, with what they belong to and a
SHA-256 of their bytes in their Parquet footer, checked before they are trusted.

The footer's `madlab.identity` key holds a JSON record: the format (madlab-task/1 or
madlab-checkpoint/1), the task id, run id, seed range, generations, the row count and the SHA-256
of the data region and schema (`_digest`). A file that is torn, changed or another task's is
Unverified, with a few words saying why.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from madlab.store.atomic import to_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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
        raise Unverified(f"does not read back ({first_line(err)})") from None
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
        raise Unverified(f"does not read back ({first_line(err)})") from None
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



def footer(path: Path) -> tuple[int | None, dict | None]:
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



def first_line(err: BaseException) -> str:
    lines = [l.strip() for l in str(err).splitlines() if l.strip()]
    return lines[0] if lines else type(err).__name__
