"""An experiment's seeds in chunks, side by side on the usable cores: the same table and summary.

A DDPM experiment's module has `measure(settings, progress) -> table` (the long table of its seeds
first_seed .. first_seed + seeds - 1, one row per measured value with the seed innermost) and
`result(table, settings) -> Result` (summary, headline, figure of the whole table). `run_in_chunks`
splits the seeds into one chunk per process (madlab.cores.layout): this process measures the
first chunk (its progress is the one shown: every chunk does the same steps), worker processes
(madlab.pool) the others; the tables interleave back into the one-process table row for row, and
`result` summarises it once. A seed's numbers do not depend on the seeds beside it, so the table
and the summary are those of one process. An experiment without `measure` (mad-loops: closed
form, its table already aggregated over seeds) runs in one process.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pandas as pd

from madlab.experiments.common import Progress, Result, no_progress


def seed_chunks(settings, processes: int) -> list:
    """`settings` split into at most `processes` settings of consecutive seeds, as even as can be."""
    first, seeds = settings.first_seed, settings.seeds
    processes = max(1, min(processes, seeds))
    size, extra = divmod(seeds, processes)
    chunks, start = [], first
    for i in range(processes):
        n = size + (i < extra)
        chunks.append(dataclasses.replace(settings, first_seed=start, seeds=n))
        start += n
    return chunks


def interleave(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunk tables (consecutive seeds, the seed innermost) as the one table of all their seeds:
    row r of every seed, in seed order, for r = 0, 1, ..."""
    if len(tables) == 1:
        return tables[0]
    whole = pd.concat(tables, ignore_index=True)
    order = whole.groupby("seed", sort=False).cumcount()       # the row's place within its seed
    keys = pd.DataFrame({"r": order, "seed": whole["seed"]})
    return whole.loc[keys.sort_values(["r", "seed"], kind="stable").index].reset_index(drop=True)


def _measure(name: str, settings, threads: int) -> pd.DataFrame:
    """A worker's call: one chunk's table."""
    import torch

    from madlab.experiments import load

    torch.set_num_threads(threads)
    return load(name).measure(settings)


def run_in_chunks(name: str, settings, processes: int, threads: int,
                  progress: Progress = no_progress) -> Result:
    """`load(name).run(settings)` with its seeds split over `processes` processes of `threads`
    torch threads each (this one included); the same Result as one process."""
    import torch

    from madlab.experiments import load
    from madlab.pool import WorkerPool

    module = load(name)
    torch.set_num_threads(threads)
    chunks = seed_chunks(settings, processes) if hasattr(module, "measure") else [settings]
    if len(chunks) == 1:
        return module.run(settings, progress)
    settings.validate()
    pool = WorkerPool(len(chunks) - 1)
    answers: dict[int, Any] = {}
    failure: list[BaseException] = []

    def collect() -> None:
        try:
            for key, answer in pool.run([(i, _measure, (name, c, threads), {}) for i, c in enumerate(chunks) if i]):
                answers[key] = answer
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            failure.append(err)

    first, rest = chunks[0], len(chunks) - 1
    where = (f"seeds {first.first_seed}-{first.first_seed + first.seeds - 1} here; "
             f"{rest} more chunk{'s' * (rest != 1)} in worker processes")

    steps = [0]          # the first chunk's steps (its progress's total)

    def report(done: int, total: int, message: str) -> None:
        steps[0] = total
        progress(done, total + 1, f"{message} ({where})")

    worker = threading.Thread(target=collect, name="madlab-experiment-chunks", daemon=True)
    try:
        worker.start()
        tables = [module.measure(first, report)]
        if worker.is_alive():
            progress(steps[0], steps[0] + 1, f"waiting for the worker process{'es' * (rest != 1)}")
        while worker.is_alive():                # the other chunks: wait for their workers
            worker.join(timeout=0.5)
        pool.close()
    except BaseException:
        pool.stop()                             # Ctrl-C or an error here: no worker outlives it
        worker.join(timeout=10)
        raise
    if failure:
        raise failure[0]
    for i in range(1, len(chunks)):
        answer = answers.get(i)
        if answer is None or answer[0] == "died":
            raise RuntimeError(f"the worker process measuring seeds {chunks[i].first_seed}-"
                               f"{chunks[i].first_seed + chunks[i].seeds - 1} died"
                               + (f" ({answer[1]})" if answer else ""))
        if answer[0] == "error":
            raise answer[1]
        tables.append(answer[1])
    progress(1, 1, "done")
    return module.result(interleave(tables), settings)
