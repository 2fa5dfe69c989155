"""A small process pool for sweep tasks that can be stopped at once: `WorkerPool`.

Each worker is a fresh Python process (multiprocessing's spawn: nothing of the driver's torch
state is inherited) that runs one call at a time, sent to it over its own pipe. The driver knows
which call every worker runs, so a worker that dies (out-of-memory kill, a crash in native code)
costs only its own call, and `stop()` kills every worker with SIGKILL and waits for them: after a
signal nothing keeps running. Workers ignore Ctrl-C (the terminal sends it to the whole process
group; their driver stops them) and exit by themselves when the driver is gone, even after
`kill -9` of the driver (madlab.interrupt.worker_init).

joblib's loky pool was used before: it cannot be stopped while calls run without tracebacks from
its manager thread, and its workers outlive a killed driver.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator

import cloudpickle   # functions by value: test helpers, partials, lambdas


class WorkerDied(RuntimeError):
    """The worker process running a call died before it answered."""


def _serve(conn: Connection, parent: int) -> None:
    """A worker's life: answer calls until told to stop (None) or the pipe closes."""
    from madlab.interrupt import worker_init

    worker_init(parent)
    while True:
        try:
            blob = conn.recv_bytes()
        except (EOFError, OSError):
            return
        call = cloudpickle.loads(blob)
        if call is None:
            return
        fn, args, kwargs = call
        try:
            answer = ("ok", fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - handed to the driver, which decides
            answer = ("error", err, "".join(traceback.format_exception(err)[-6:]))
        try:
            try:
                blob = cloudpickle.dumps(answer)
            except Exception:  # noqa: BLE001 - an unpicklable error: send its text
                blob = cloudpickle.dumps(("error", RuntimeError(repr(answer[1])), answer[-1]))
            conn.send_bytes(blob)
        except OSError:        # the driver is gone: nobody to answer
            os._exit(1)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job: Any = None          # the key of the call it runs (None: idle)


class WorkerPool:
    """`size` worker processes; `run(calls)` yields (key, ("ok", value) | ("error", exception,
    traceback text) | ("died", WorkerDied)) as calls finish, in any order."""

    def __init__(self, size: int):
        self.size = size
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[_Worker] = []

    def _start(self) -> _Worker:
        mine, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(target=_serve, args=(theirs, os.getpid()), daemon=True,
                                       name=f"madlab-worker-{len(self.workers)}")
        process.start()
        theirs.close()
        worker = _Worker(process, mine)
        self.workers.append(worker)
        return worker

    def run(self, calls: list[tuple[Any, Callable, tuple, dict]]) -> Iterator[tuple[Any, tuple]]:
        """calls: (key, fn, args, kwargs). A call whose worker dies answers ("died", WorkerDied);
        a new worker takes the dead one's place for the calls still waiting."""
        waiting = list(calls)
        while waiting or any(w.job is not None for w in self.workers):
            for worker in self.workers:
                if worker.job is None and waiting:
                    key, fn, args, kwargs = waiting.pop(0)
                    worker.job = key
                    worker.conn.send_bytes(cloudpickle.dumps((fn, args, kwargs)))
            while waiting and len([w for w in self.workers if w.job is not None]) < self.size:
                worker = self._start()
                key, fn, args, kwargs = waiting.pop(0)
                worker.job = key
                worker.conn.send_bytes(cloudpickle.dumps((fn, args, kwargs)))
            busy = [w for w in self.workers if w.job is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn in ready:
                    try:
                        answer = cloudpickle.loads(worker.conn.recv_bytes())
                    except (EOFError, OSError):
                        answer = None
                    if answer is not None:
                        key, worker.job = worker.job, None
                        yield key, answer
                        continue
                if worker.conn in ready or worker.process.sentinel in ready:
                    worker.process.join(timeout=5)
                    if worker.process.is_alive():
                        continue                      # its answer is on the way
                    code = worker.process.exitcode
                    key, worker.job = worker.job, None
                    self._drop(worker)
                    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
                           else f"exit status {code}")
                    yield key, ("died", WorkerDied(f"the worker process died ({how})"))

    def _drop(self, worker: _Worker) -> None:
        worker.conn.close()
        self.workers.remove(worker)

    def close(self) -> None:
        """Let idle workers exit and wait for them."""
        for worker in list(self.workers):
            try:
                worker.conn.send_bytes(cloudpickle.dumps(None))
            except OSError:
                pass
        for worker in list(self.workers):
            worker.process.join(timeout=30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            self._drop(worker)

    def stop(self) -> None:
        """Kill every worker now (SIGKILL) and wait until they are gone."""
        for worker in self.workers:
            if worker.process.is_alive():
                worker.process.kill()
        for worker in list(self.workers):
            worker.process.join()
            self._drop(worker)
