"""Where things lie in a run or sweep folder (a `madlab run` folder is a one-configuration sweep):

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
  .lock                    the driver's lock (madlab.store.lock)
"""
from __future__ import annotations

from pathlib import Path

CONFIG = "config.json"
RESULTS = "results.parquet"
MANIFEST = "sweep.json"
TASKS = "tasks"
LOCK = ".lock"
CHECKPOINT = ".ckpt"              # tasks/<id>.ckpt/: a running task's finished generations
MERGED_KEY = b"madlab.tasks"      # results.parquet metadata: the task ids merged into it
PROVENANCE_KEY = b"madlab.provenance"   # a task file's metadata: where and by what it was computed


def task_paths(out: Path, task_id: str) -> dict[str, Path]:
    """Where task `task_id` of sweep `out` keeps its result, its failure and its running marker."""
    folder = Path(out) / TASKS
    return {"done": folder / f"{task_id}.parquet", "failed": folder / f"{task_id}.error.json",
            "running": folder / f"{task_id}.running"}
