"""Run directories on disk: the resolved config beside one tidy Parquet table, written atomically.

A run directory holds
  config.json      the fully resolved RunConfig (plus run id and madlab version)
  results.parquet  one row per (seed, generation, metric): `pd.read_parquet(path)` loads it
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from madlab import __version__
from madlab.config import ConfigError, RunConfig

CONFIG = "config.json"
RESULTS = "results.parquet"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def config_record(cfg: RunConfig) -> dict:
    return {"run": cfg.run_id(), "madlab": __version__, "config": cfg.to_dict()}


def check_run_dir(out: Path, cfg: RunConfig) -> bool:
    """True if `out` already holds this run's finished results; raise ConfigError if it holds
    anything else. Writes nothing."""
    out = Path(out)
    if not out.exists():
        return False
    if not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    config_path = out / CONFIG
    if not config_path.exists():
        if any(out.iterdir()):
            raise ConfigError(f"--out {out} is not empty and holds no madlab run; choose another --out")
        return False
    try:
        stored = json.loads(config_path.read_text())
        held = RunConfig.from_dict(stored["config"]).run_id()
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"--out {out} holds an unreadable {CONFIG} ({err}); choose another --out")
    if held != cfg.run_id():
        raise ConfigError(f"--out {out} already holds a different run (run {held}, this one is "
                          f"{cfg.run_id()}); choose another --out")
    return (out / RESULTS).exists()


def write_config(out: Path, cfg: RunConfig) -> None:
    atomic_write_bytes(Path(out) / CONFIG,
                       json.dumps(config_record(cfg), indent=2, sort_keys=True).encode())


def write_results(out: Path, frame: pd.DataFrame) -> None:
    atomic_write_parquet(frame, Path(out) / RESULTS)


def load_results(out: Path) -> pd.DataFrame:
    path = Path(out) / RESULTS
    if not path.exists():
        raise ConfigError(f"{out} holds no {RESULTS}")
    return pd.read_parquet(path)
