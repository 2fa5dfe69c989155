"""One driver per sweep folder, and a worker's lease on it.

The driver holds an exclusive `flock` on `out/.lock` (SweepLock) and writes its pid, host and a
session token into it; the kernel releases the lock when the driver exits, even by SIGKILL. A
worker takes a Lease when its task starts (the holder's token) and checks it before each write:
once that driver is gone, or another one took the folder over, the worker stops (Abandoned).
"""
from __future__ import annotations

import fcntl
import os
import re
import socket
import uuid
from pathlib import Path

from madlab.config import ConfigError
from madlab.store.atomic import disk_error
from madlab.store.layout import LOCK


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


def lock_session(out: Path) -> str | None:
    """The session token the lock's current holder wrote into `out/.lock`."""
    try:
        text = (Path(out) / LOCK).read_text()
    except OSError:
        return None
    m = re.search(r"session (\S+)", text)
    return m.group(1) if m else None


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
