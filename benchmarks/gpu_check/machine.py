"""Part e of the GPU check: the machine, the software and the commit (run in the parent process)."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys

from benchmarks.harness import ROOT
from loops.native import cpu_model


def run(args) -> dict:
    """The machine, the software, the commit (in the parent process: no part runs before it)."""
    import importlib.metadata as md
    info: dict = {"python": platform.python_version(), "executable": sys.executable,
                  "cpu_cores": os.cpu_count(), "platform": platform.platform()}
    info["cpu_model"] = cpu_model() or "unknown"
    try:
        info["mem_total_gib"] = round(int(next(line.split()[1] for line in open("/proc/meminfo")
                                               if line.startswith("MemTotal"))) / 2**20, 1)
    except OSError:
        pass
    packages = {}
    for name in ("torch", "triton", "numpy", "scipy", "pandas", "pyarrow", "POT",
                 "torch-linear-assignment", "scikit-learn", "pytest"):
        try:
            packages[name] = md.version(name)
        except md.PackageNotFoundError:
            packages[name] = None
    info["packages"] = packages
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                       "memory_gib": round(p.total_memory / 2**30, 1),
                       "multiprocessors": p.multi_processor_count, "count": torch.cuda.device_count(),
                       "cudnn": torch.backends.cudnn.version()}
    smi = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                    "--format=csv,noheader"])
    info["nvidia_smi"] = smi
    info["c_compiler"] = (run_text([os.environ.get("CC", "cc"), "--version"]) or "none").splitlines()[0]
    info["commit"] = (run_text(["git", "-C", str(ROOT), "rev-parse", "HEAD"]) or
                      os.environ.get("MADLAB_COMMIT") or args.commit or "unknown (no .git here)")
    dirty = run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    info["uncommitted_files"] = None if dirty is None else len(dirty.splitlines())
    info["source_digest"] = source_digest()
    from loops import philox
    info["philox_c_kernel"] = philox.kernel() is not None
    return info


def run_text(cmd) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def source_digest() -> str:
    """sha256 of the sources (.py .c .toml of the packages, benchmarks and tests): identifies the
    tree where .git did not travel."""
    h = hashlib.sha256()
    for top in ("madlab", "loops", "toy", "analysis", "benchmarks", "tests"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".py", ".c", ".toml") and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(ROOT)).encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]
