"""What a folder is (a madlab run, a sweep, nothing) and a run's own files: config.json (its
resolved RunConfig) and results.parquet (its rows); refusals are one line (ConfigError)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from madlab import __version__
from madlab.config import ConfigError, RunConfig
from madlab.store.atomic import atomic_write_bytes, atomic_write_parquet, to_json
from madlab.store.layout import CONFIG, LOCK, RESULTS
from madlab.store.tasks import read_manifest

if TYPE_CHECKING:
    import pandas as pd


def config_record(cfg: RunConfig, provenance: dict | None = None) -> dict:
    record = {"run": cfg.run_id(), "madlab": __version__, "config": cfg.to_dict()}
    if provenance is not None:
        record["provenance"] = provenance
    return record


def written_by_0_1(record: dict) -> bool:
    """Whether a config.json or sweep.json record was written by madlab 0.1 (one flat config of
    every backend's options, run ids hashed from it)."""
    return str(record.get("madlab", "0.1")).startswith("0.1")


def check_format(out: Path, record: dict) -> None:
    """Refuse (one line, nothing written) to resume a directory madlab 0.1 wrote: its run and
    task ids were hashed from the old flat config, so this version would run every task again
    beside the old ones."""
    if written_by_0_1(record):
        raise ConfigError(f"--out {out} was written by madlab {record.get('madlab', '0.1')}, whose run "
                          f"ids this version ({__version__}) does not reproduce (options are now grouped by "
                          "component); it cannot resume there: choose another --out (madlab report and "
                          "madlab status still read it)")


def folder_kind(out: Path, manifest: dict | None = None) -> str | None:
    """run | sweep | None: what made the folder (the manifest's kind; a folder written before kinds
    were recorded is a run if it holds a config.json)."""
    manifest = read_manifest(out) if manifest is None else manifest
    if manifest is None:
        return "run" if (Path(out) / CONFIG).exists() else None
    kind = manifest.get("kind")
    return kind if kind in ("run", "sweep") else "run" if (Path(out) / CONFIG).exists() else "sweep"


def check_kind(out: Path, manifest: dict, kind: str) -> None:
    """Refuse (one line) a `madlab sweep` on a run folder or a `madlab run` on a sweep folder."""
    held = folder_kind(out, manifest)
    if held == kind:
        return
    if held == "run":
        raise ConfigError(f"--out {out} is a madlab run folder (made by madlab run); resume it with "
                          "madlab run and the same options, or choose another --out for this sweep")
    raise ConfigError(f"--out {out} is a madlab sweep folder (made by madlab sweep); resume it with "
                      "madlab sweep and the same grid, or choose another --out for this run")


def check_out(out: Path) -> None:
    """ConfigError for an --out that can never be a folder: a dangling symbolic link, a file."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise ConfigError(f"--out {out} is a symbolic link to {os.readlink(out)}, which does not exist; "
                          "create that folder or choose another --out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")


def check_run_dir(out: Path, cfg: RunConfig) -> bool:
    """True if `out` already holds this run's finished results; raise ConfigError if it holds
    anything else. Writes nothing."""
    out = Path(out)
    check_out(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    config_path = out / CONFIG
    manifest = read_manifest(out)
    if manifest is not None:
        check_kind(out, manifest, "run")
    if not config_path.exists():
        if manifest is not None and manifest.get("tasks"):
            raise ConfigError(f"--out {out} is a madlab run folder whose {CONFIG} is missing; choose "
                              "another --out (madlab report and madlab status still read it)")
        if any(p.name != LOCK for p in out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no madlab run; choose another --out")
        return False
    try:
        stored = json.loads(config_path.read_text())
        if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict):
            raise ValueError("it is not a madlab config record")
        check_format(out, stored)
        held = RunConfig.from_dict(stored["config"]).run_id()
    except ConfigError:
        raise
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--out {out} holds an unreadable {CONFIG} ({err}); choose another --out")
    if held != cfg.run_id():
        raise ConfigError(f"--out {out} already holds a different run (run {held}, this one is "
                          f"{cfg.run_id()}); choose another --out")
    return (out / RESULTS).exists()


def write_config(out: Path, cfg: RunConfig, provenance: dict | None = None) -> None:
    atomic_write_bytes(Path(out) / CONFIG, to_json(config_record(cfg, provenance), indent=2, sort_keys=True))


def write_results(out: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(frame, Path(out) / RESULTS)


def load_results(out: Path) -> pd.DataFrame:
    import pandas as pd

    path = Path(out) / RESULTS
    if not path.exists():
        raise ConfigError(f"{out} holds no {RESULTS}")
    return pd.read_parquet(path)
