"""Stopping on a signal: SIGINT (Ctrl-C), SIGTERM (kill, a batch system) and SIGHUP (a closed
terminal) become one exception, `Interrupted`, that unwinds the driver through its clean-ups
(executors stop their workers, the sweep lock is released) to one line and exit status 128 + N.

Workers never handle these signals themselves: a pool's worker processes ignore SIGINT (a Ctrl-C
reaches the whole process group; their driver stops them) and die with their driver
(`watch_parent`), so that no worker outlives it, even after `kill -9` of the driver.
"""
from __future__ import annotations

import os
import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A stop signal arrived; `code` is the exit status (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum


def _raise(signum, frame) -> None:
    hold()                        # a second Ctrl-C must not break the clean-up of the first
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into `Interrupted` in this (the main) thread."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in SIGNALS:
        signal.signal(signum, _raise)


def hold() -> None:
    """Ignore further stop signals (while cleaning up after the first)."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def as_interrupted(err: BaseException) -> Interrupted | None:
    """`err` as an Interrupted (a bare KeyboardInterrupt counts as SIGINT), else None."""
    if isinstance(err, Interrupted):
        return err
    if isinstance(err, KeyboardInterrupt):
        return Interrupted(signal.SIGINT)
    return None


def watch_parent(parent: int, every_s: float = 0.2) -> None:
    """In a worker process: exit at once (no clean-up, nothing half-written: every write is a
    rename) when the process `parent` is gone, i.e. when this process has been re-parented."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(every_s)

    threading.Thread(target=watch, name="madlab-watch-parent", daemon=True).start()


def worker_init(parent: int) -> None:
    """Initializer of a pool worker process: ignore Ctrl-C (the driver stops its workers), die with
    the driver, and write into the sweep directory only while the driver holds its lock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from madlab.sweep import WORKER

    WORKER["lease"] = True
    watch_parent(parent)
