"""Provenance: which code, libraries, machine and command produced a run directory's numbers.

`provenance(device)` is one small JSON-ready dict:

    madlab      the package version                 git      {"commit", "dirty", "diff"} when madlab runs
    torch, numpy, pot, python   library versions                 from a git checkout, else None
    device      "cpu: <CPU model>" or "cuda:0: <GPU name>"       host     the machine's name
    command     the command line ("madlab sweep ...")            started  ISO 8601 time (UTC)

config.json, sweep.json (one entry per session that ran there, with its end and outcome) and
every task file (Parquet metadata `madlab.provenance`, written where the task ran) carry it;
`madlab status` and `madlab report` print it, and a resumed run warns when the code differs.
Versions are read from the installed distributions' metadata: nothing heavy is imported.
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from loops.native import cpu_model

COMMAND: list[str] | None = None     # set by the command line (madlab.cli.main): what the user typed


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_state() -> dict | None:
    """{"commit", "dirty"[, "diff"]} of the checkout madlab is imported from (diff: a hash of the
    uncommitted changes to the packages); None for an installed copy or without git."""
    here = Path(__file__).resolve().parent
    try:
        def git(*args: str, where: Path = here) -> str:
            done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20)
            if done.returncode != 0:
                raise OSError(done.stderr.strip())
            return done.stdout.strip()

        top = Path(git("rev-parse", "--show-toplevel")).resolve()
        if not (top / "madlab" / "__init__.py").exists():     # madlab inside some other repository
            return None
        commit = git("rev-parse", "HEAD")
        packages = ("madlab", "loops", "toy", "analysis")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *packages, where=top))
        state = {"commit": commit, "dirty": dirty}
        if dirty:     # which uncommitted changes: two runs from the same edits are the same code
            diff = git("diff", "HEAD", "--", *packages, where=top)
            state["diff"] = hashlib.sha256(diff.encode()).hexdigest()[:12]
        return state
    except (OSError, subprocess.TimeoutExpired):
        return None


@functools.lru_cache(maxsize=None)
def device_name(device: str = "cpu") -> str:
    """'cpu: <model>' or 'cuda:N: <GPU name>'."""
    if str(device).startswith("cuda"):
        try:
            import torch

            index = torch.device(device).index
            index = torch.cuda.current_device() if index is None else index
            return f"cuda:{index}: {torch.cuda.get_device_name(index)}"
        except Exception:  # noqa: BLE001 - provenance never stops a run
            return str(device)
    return f"{device}: {cpu_model() or platform.processor() or platform.machine()}"


def command_line() -> str:
    argv = COMMAND if COMMAND is not None else ["python", *sys.argv]
    return shlex.join(argv)


def provenance(device: str = "cpu") -> dict:
    from madlab import __version__

    return {"madlab": __version__, "git": git_state(), "torch": _version("torch"),
            "numpy": _version("numpy"), "pot": _version("POT"),
            "python": platform.python_version(), "device": device_name(device),
            "host": socket.gethostname(), "command": command_line(), "started": now()}


def code_of(record: dict | None) -> str:
    """The code a provenance record names, in words: 'madlab 0.2.0 (git 1a2b3c4, dirty)'."""
    if not record:
        return "an unrecorded madlab version"
    git = record.get("git")
    changes = f", with uncommitted changes {git.get('diff', '')}".rstrip() if git and git.get("dirty") else ""
    where = f" (git {git['commit'][:7]}{changes})" if git else ""
    return f"madlab {record.get('madlab', '?')}{where}"


def same_code(a: dict | None, b: dict | None) -> bool:
    """Whether two records name the same code (version, commit and the same uncommitted changes)."""
    if not a or not b:
        return a == b
    ga, gb = a.get("git"), b.get("git")
    if a.get("madlab") != b.get("madlab"):
        return False
    if ga is None or gb is None:
        return ga is None and gb is None
    return ga["commit"] == gb["commit"] and ga.get("diff") == gb.get("diff")


def summary(record: dict) -> str:
    """One line: code, libraries, device, host, times, command."""
    libs = ", ".join(f"{k} {record[k]}" for k in ("torch", "numpy", "pot") if record.get(k))
    times = f"started {record.get('started', '?')}"
    if record.get("ended"):
        times += f", ended {record['ended']}"
    if record.get("outcome"):
        times += f" ({record['outcome']})"
    return (f"{code_of(record)}; {libs}; {record.get('device', '?')} on {record.get('host', '?')}; "
            f"{times}; command: {record.get('command', '?')}")
