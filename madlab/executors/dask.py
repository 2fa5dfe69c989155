"""The Dask executor (DaskExecutor) and a connection to its scheduler that cannot hang."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from madlab.config import ConfigError
from madlab.executors.common import Done, Step, last_line, require
from madlab.sweep import Task, compute_task, record, record_crash


@dataclass
class DaskExecutor:
    """Tasks on any dask.distributed cluster (LocalCluster, dask-jobqueue, Kubernetes): workers
    compute, this process writes the results, so workers need no shared file system."""
    scheduler: str                    # scheduler address (tcp://host:8786) or a scheduler JSON file
    threads: int = 1                  # torch threads per task
    target: Callable = compute_task   # worker entry point (task, threads=) -> (rows, failure)
    timeout_s: float = 30.0           # the whole connection, handshake included
    name = "dask"
    in_process = False

    client: object = field(default=None, repr=False)   # set by connect()

    def connect(self):
        """Connect to the scheduler (once); ConfigError if it cannot be reached."""
        if self.client is None:
            distributed = require("distributed")
            where = self.scheduler
            if where.endswith(".json") and Path(where).exists():
                try:
                    address = json.loads(Path(where).read_text())["address"]
                    if not isinstance(address, str):
                        raise TypeError("its address is not a string")
                except (OSError, ValueError, KeyError, TypeError) as err:
                    raise ConfigError(f"--scheduler {where} is not a dask scheduler file ({type(err).__name__}: "
                                      f"{' '.join(str(err).split())}); give the JSON file dask-scheduler "
                                      "--scheduler-file wrote, or an address") from None
                where = address
            self.client = connect_within(distributed, where, self.timeout_s, self.scheduler)
        return self.client

    def run(self, out: Path, tasks: list[Task], done: Done, step: Step | None = None) -> None:
        distributed = require("distributed")
        client = self.connect()
        futures = []
        try:
            # workers that see `out` (one machine, a shared disk) checkpoint every generation
            # there, under a lease on this driver's lock; the others compute in memory
            futures = client.map(self.target, tasks, threads=self.threads, out=str(Path(out).resolve()), lease=True,
                                 pure=False)
            owner = {f.key: t for f, t in zip(futures, tasks)}
            for future in distributed.as_completed(futures):
                task = owner[future.key]
                try:
                    frame, failure = future.result()
                except Exception as err:  # noqa: BLE001 - a worker died (KilledWorker) or was lost
                    done(record_crash(out, task, f"dask: {type(err).__name__}: {last_line(err)}"))
                else:
                    done(record(out, task, frame, failure))
                future.release()
        except BaseException:
            # a signal: drop every task from the cluster; a task already running stops at its next
            # checkpoint, when its lease sees that this driver has let go of the lock
            if futures:
                client.cancel(futures, force=True)
            raise
        finally:
            client.close()
            self.client = None


def connect_within(distributed, address: str, timeout_s: float, given: str):
    """A dask Client of the scheduler at `address`, or ConfigError within about `timeout_s`: the
    client's own timeout covers the TCP connection only, and a server that accepts it but never
    speaks dask's protocol would hold the handshake for ever, so the connection runs in a thread
    this one stops waiting for."""
    import threading

    found: dict = {}

    def connect() -> None:
        try:
            found["client"] = distributed.Client(address, timeout=f"{timeout_s:g}s")
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            found["error"] = err

    worker = threading.Thread(target=connect, daemon=True, name="madlab-dask-connect")
    worker.start()
    worker.join(timeout_s + 5)
    if worker.is_alive():
        raise ConfigError(f"no dask scheduler answered at {given} within {timeout_s:g} s (is it a dask "
                          "scheduler's address, tcp://host:8786?)")
    if "error" in found:
        err = found["error"]
        if isinstance(err, (OSError, TimeoutError, ValueError, TypeError)):
            raise ConfigError(f"cannot reach the dask scheduler at {given}: "
                              f"{' '.join(str(err).split()) or type(err).__name__}") from None
        raise err
    return found["client"]
