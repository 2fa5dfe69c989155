"""Per-generation checkpoints of a task (TaskCheckpoint), and every row on disk so far.

A task checkpoints each finished generation under tasks/<id>.ckpt/ (rows, then the loop's
state), so an interrupted task resumes after its newest generation whose files all verify.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from madlab.store.atomic import atomic_write_bytes, discard
from madlab.store.layout import CHECKPOINT, TASKS, task_paths
from madlab.store.lock import Lease
from madlab.store.verified import (CHECKPOINT_FORMAT, TASK_FORMAT, Unverified, first_line, frame_identity,
                                   read_verified, verified_parquet_bytes)

if TYPE_CHECKING:
    import pandas as pd


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
            raise Unverified(f"{path} does not load ({first_line(err)})") from None
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
            discard(self.path(t, "pt"))
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
                    discard(self.folder / name)

    def clear(self) -> None:
        """Remove the checkpoint (the task is recorded), unless it is kept."""
        if self.keep or not self.folder.exists():
            return
        for name in self._names():
            discard(self.folder / name)
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



def partial_rows(out: Path, runs: Mapping[str, str]) -> "tuple[pd.DataFrame | None, str]":
    """Every row on disk so far of the tasks of `runs` (task id -> the task's run id), in their
    order: a finished task's file, else the finished generations of its checkpoint, their `run`
    set to the task's as the sweep's worker sets it when the task finishes (a seed chunk's own
    run id names its seeds too); and a few words saying what was read."""
    import pandas as pd

    frames, done, partial, generations, bad = [], 0, 0, 0, []
    for task_id, run in runs.items():
        path = task_paths(out, task_id)["done"]
        if path.exists():
            try:                   # only a file that verifies as this task's (read_verified)
                frames.append(read_verified(path, {"format": TASK_FORMAT, "task": task_id})[0].to_pandas())
                done += 1
                continue
            except Unverified:     # torn, changed or another task's: the sweep recomputes it
                bad.append(path.name)
        rows = TaskCheckpoint(out, task_id).rows()
        if rows is not None:
            frames.append(rows.assign(run=run))
            partial += 1
            generations += int(rows["generation"].max())
    what = (f"{done} finished task{'s' * (done != 1)}"
            + (f" and {generations} finished generations of {partial} unfinished "
               f"task{'s' * (partial != 1)}" if partial else "")
            + (f"; left out {len(bad)} task file{'s' * (len(bad) != 1)} that do{'es' * (len(bad) == 1)} "
               f"not verify ({', '.join(bad[:3])}{', ...' * (len(bad) > 3)}: torn or not this "
               f"sweep's; rerunning the sweep computes {'them' if len(bad) > 1 else 'it'} again)" if bad else ""))
    if not frames:
        return None, what
    return pd.concat(frames, ignore_index=True), what
