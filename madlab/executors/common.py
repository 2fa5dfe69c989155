"""What every executor shares: the callbacks' types, optional imports, outcomes read off the disk."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from madlab import store
from madlab.config import ConfigError
from madlab.sweep import Task

Done = Callable[[dict], None]          # called with each task's outcome {id, state, ...}
Step = Callable[[int], None]           # called with seed-generations just finished (in-process only)
EXTRAS = {"submitit": "slurm", "distributed": "dask"}


def require(module: str):
    """Import an optional dependency or fail with one line naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module]
        raise ConfigError(f"the {extra} executor needs the '{module}' package: "
                          f"pip install 'madlab[{extra}]'") from None


def outcome_on_disk(out: Path, task: Task, state: str) -> dict:
    """`task`'s outcome as its files under `out` say (`state`: done or failed), for a task that
    was recorded without its outcome reaching this process."""
    if state == "failed":
        return {"id": task.id, "state": "failed", "error": (store.read_failure(out, task.id) or {}).get("error")}
    return {"id": task.id, "state": state}


def last_line(text) -> str:
    """The last non-blank line of `text` (an error's message), stripped; '' if there is none."""
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    return lines[-1] if lines else ""
