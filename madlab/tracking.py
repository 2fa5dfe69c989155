"""Optional Weights & Biases logging of a finished run or sweep (`--wandb PROJECT`, madlab[wandb]).

After `madlab run` or `madlab sweep` has written results.parquet, `log_directory` opens one W&B
run per configuration (named by its run id, grouped by the run's or sweep's directory name) and logs:

  config      the configuration's resolved options (flat names, as in the results table), its
              seeds, and `provenance` (the last session's: code, libraries, machine, command)
  history     one step per generation t, for each metric m: m/mean, m/median, m/se, m/p05, m/p95
              (the 5-95 % band over seeds) and, where the run records it, outlier_share/mean
  summary     rows, seeds, generations, the directory

Nothing here runs while the loop does, so a run without --wandb is never slower and a run with it
is never stopped by W&B: an error while logging is one warning line, and the results stay on disk.
WANDB_MODE=offline writes the runs under ./wandb (or WANDB_DIR) for a later `wandb sync`.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

INSTALL = "--wandb needs the wandb package: pip install 'madlab[wandb]' (or pip install wandb)"


def require() -> None:
    """Raise ConfigError (one line, exit 2) unless wandb can be imported."""
    from madlab.config import ConfigError
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None


def aggregates(frame) -> list[dict[str, Any]]:
    """One dict per generation (ascending): {"generation": t, "m/mean": ..., "m/median": ...,
    "m/se": ..., "m/p05": ..., "m/p95": ...} for every metric m of one configuration's rows."""
    import math

    steps: dict[int, dict[str, Any]] = {}
    for (metric, t), values in frame.groupby(["metric", "generation"])["value"]:
        v = values.astype(float)
        row = steps.setdefault(int(t), {"generation": int(t)})
        row[f"{metric}/mean"] = float(v.mean())
        row[f"{metric}/median"] = float(v.median())
        row[f"{metric}/se"] = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
        row[f"{metric}/p05"] = float(v.quantile(0.05))
        row[f"{metric}/p95"] = float(v.quantile(0.95))
    return [steps[t] for t in sorted(steps)]


def _manifest(out: Path) -> dict:
    try:
        return json.loads((out / "sweep.json").read_text())
    except (OSError, ValueError):
        return {}


def log_directory(project: str, out: Path, *, entity: str | None = None) -> int:
    """Log every configuration of the run or sweep directory `out` to W&B project `project`;
    return how many W&B runs were written. Never raises: a failure is one warning line on stderr."""
    try:
        return _log(project, Path(out), entity)
    except Exception as err:  # noqa: BLE001 - W&B must never stop a finished run
        print(f"madlab: warning: W&B logging failed ({type(err).__name__}: {err}); the results are in "
              f"{out}", file=sys.stderr)
        return 0


def _log(project: str, out: Path, entity: str | None) -> int:
    import pandas as pd
    import wandb

    frame = pd.read_parquet(out / "results.parquet")
    manifest = _manifest(out)
    group = out.resolve().name                       # the run's or sweep's directory
    sessions = manifest.get("sessions") or [{}]
    provenance = {k: v for k, v in sessions[-1].items() if k not in ("ended", "outcome")}
    configs: dict[str, dict] = {}
    for task in manifest.get("tasks", []):
        configs.setdefault(task.get("run"), dict(task.get("config", {})))
    written = 0
    try:
        written = _log_runs(wandb, project, entity, frame, configs, manifest, provenance, group, out)
    finally:
        wandb.teardown()          # the next log (another directory, WANDB_DIR) starts afresh
    return written


def _log_runs(wandb, project, entity, frame, configs, manifest, provenance, group, out) -> int:
    written = 0
    for run_id, rows in frame.groupby("run", sort=False):
        config = {k: v for k, v in configs.get(run_id, {}).items() if k not in ("first_seed",)}
        config |= {"seeds": int(rows["seed"].nunique()), "run_id": run_id, "directory": str(out),
                   "kind": manifest.get("kind", "sweep"), "provenance": provenance}
        run = wandb.init(project=project, entity=entity, group=group, name=run_id, config=config,
                         job_type=manifest.get("kind", "sweep"), reinit=True)
        try:
            for step in aggregates(rows):
                run.log(step, step=step["generation"])
            run.summary.update({"rows": len(rows), "generations": int(rows["generation"].max())})
        finally:
            run.finish()
        written += 1
    return written
