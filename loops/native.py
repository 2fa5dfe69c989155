"""Small C kernels compiled once per machine and loaded with ctypes (the Philox draws of
loops/philox.c, the toy DDPM's row kernels of toy/fused_mlp.c).

A C file is compiled with the system C compiler (`$CC`, else `cc`) at first use (about a second)
into `$MADLAB_CACHE` (default `~/.cache/madlab`; the temporary directory when that is not
writable), one shared library per source, flags, compiler and CPU (`-march=native`: a cluster with
mixed CPUs gets one file per CPU model). Callers fall back to torch ops where no compiler works.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence


def cache_dir() -> Path:
    base = os.environ.get("MADLAB_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "madlab"
    return Path(base)


def cpuinfo(*keys: str) -> dict[str, str]:
    """The first value of each of `keys` ("model name", "flags") in /proc/cpuinfo, the one place
    madlab reads it; a key it does not have is left out (all of them where there is no such file)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key = line.split(":", 1)[0].strip()
                if key in keys and key not in fields:
                    fields[key] = line.split(":", 1)[1].strip()
                    if len(fields) == len(keys):
                        break
    except OSError:
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name ('' where /proc/cpuinfo does not give one)."""
    return cpuinfo("model name").get("model name", "")


def cpu_signature() -> str:
    """CPU model and ISA flags: a -march=native library is only reused on the same kind of CPU."""
    fields = cpuinfo("model name", "flags")
    return f"{platform.machine()}|{fields.get('model name', '')}|{fields.get('flags', '')}"


def build(source: Path, flags: Sequence[str]) -> Path:
    """The shared library of `source` compiled with `flags` (cached); OSError if no compiler works.
    A compiler that rejects -march=native (some clang) is retried without it."""
    cc = os.environ.get("CC", "cc")
    key = hashlib.sha256(b"\0".join([source.read_bytes(), " ".join([cc, *flags]).encode(),
                                     cpu_signature().encode()])).hexdigest()[:16]
    name = f"{source.stem}_{key}.so"
    user = getattr(os, "getuid", lambda: "user")()  # no getuid on Windows
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"madlab-{user}"):
        if (folder / name).exists():
            return folder / name
        try:  # a read-only home (some clusters) falls back to the temporary directory
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK):
                break
        except OSError:
            continue
    target = folder / name
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for attempt in (list(flags), [f for f in flags if f != "-march=native"]):
            done = subprocess.run([cc, *attempt, str(source), "-o", tmp], capture_output=True,
                                  text=True)
            if done.returncode == 0:
                break
        else:
            raise OSError(f"{cc} failed: {done.stderr.strip()[:500]}")
        os.replace(tmp, target)  # atomic: concurrent workers may compile at the same time
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
