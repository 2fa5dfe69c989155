"""What a part of the GPU check reports: its JSON file, rewritten at every change (the parent polls it)."""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import traceback
from pathlib import Path


def clean(obj):
    """JSON-safe: numpy and torch scalars to Python, NaN / inf to strings, keys to strings."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(data), indent=1))
    os.replace(tmp, path)


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class Report:
    """A part's results, flushed to its JSON file at every change (the parent polls it)."""

    def __init__(self, path: Path, part: str):
        self.path, self.data = path, {"part": part, "status": "running", "results": {},
                                      "notes": [], "error": None, "traceback": None}
        self.flush()

    def set(self, **values) -> None:
        self.data["results"].update(values)
        self.flush()

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.data["notes"].append(text)
        self.flush()

    def headline(self, *lines: str) -> None:
        """Lines for summary.md (the part's key figures)."""
        for line in lines:
            print(f"  {line}", flush=True)
        self.data["results"].setdefault("headline", []).extend(lines)
        self.flush()

    def status(self, status: str) -> None:
        self.data["status"] = status
        self.flush()

    def substep_failed(self, what: str, err: BaseException) -> None:
        """A sub-step broke: recorded, the part goes on (its status becomes 'fail')."""
        self.data.setdefault("substep_errors", []).append(
            {"step": what, "error": one_line(err), "traceback": traceback.format_exc()})
        print(f"  {what} failed: {one_line(err)}", flush=True)
        self.flush()

    def flush(self) -> None:
        write_json(self.path, self.data)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
