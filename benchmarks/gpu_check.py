"""The prepared GPU check (issue 12, item 4): one command, at most 8 minutes on one H200, leaving a
summary under --out that survives a part that breaks or runs out of time.

The lead's command. The device machine has no network and lacks POT and torch-linear-assignment,
so they travel as wheels; madlab runs from the checkout (`pip install -e .` would need PyPI).
The device tool sends the lead's checkout, so merge this branch first. Then:

    bash benchmarks/gpu_wheels.sh        # HERE, once, in the repository root: .whl/ (1.6 MB)

and the device tool's `run` with carry [".whl"] and timeout_s 560:

    bash benchmarks/gpu_check.sh

(gpu_check.sh is, written out: `python3 -m pip install -q --no-index --no-deps --no-compile
--no-cache-dir --upgrade --target /tmp/site .whl/*.whl; export PYTHONPATH=$PWD:/tmp/site
PYTHONUNBUFFERED=1; python3 -m benchmarks.gpu_check --out $OUT`; extra arguments are passed on,
e.g. `bash benchmarks/gpu_check.sh --parts b,d --variants auto,compile`.) The default budget
is 470 s of parts plus start-up: within a 560 s command, inside the 15 device-minutes of a task
with the machine's start. What comes back: OUT/summary.md (printed last, so the tool's output
tail shows it), OUT/summary.json, OUT/gpu_check.log, OUT/tracebacks.txt (if a part broke) and the
results tables toy_rows / agreement_rows / edm_rows (.parquet): 7 files, under the tool's 8.

Parts, each in its own process under its own time budget; a part's result (or its error: one line
here, the traceback in tracebacks.txt) is written to summary.json / summary.md as soon as it is
known, and a part's partial results as they come, so a part that breaks or times out leaves the
others' and its own so far:

  e  the machine and the commit: GPU, driver, torch / CUDA versions, CPU cores, packages present
  a  the CUDA tests: `pytest -m cuda` over the test files that have such tests
  d  CPU against CUDA at the science level: the default experiment, 64 seeds x 3 generations on
     both devices; per generation, the medians over seeds of W2 and fd must agree within a band
     from their bootstrap standard errors; and the Philox streams' bits must be equal
  b  the toy DDPM at 1000 seeds x 3 generations of the default experiment (augment, SIMS w = 3,
     |D_s| = 250, exact W2 by the device auction, and fd) through madlab.runner.run_config:
     seed-generations/s (steady = generations 2.., generation 1 reported apart), phase times,
     peak GPU memory, the figure5-paper wall time extrapolated; OT solvers at 1000 seeds (auction
     on the device, POT on the host's cores, torch-linear-assignment); `--variants` runs the
     same experiment per step implementation (MADLAB_KERNELS values) side by side
  c  an EDM digits loop (--backend edm): 2 generations, SIMS guidance, FID with classifier
     features, medium net: training and sampling images/s, FID per generation

    python -m benchmarks.gpu_check --out /tmp/gc --tiny --device cpu   # every part, toy size, CPU
    python -m benchmarks.gpu_check --out /tmp/gc --parts b --variants auto,compile   # (item 3)
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET = 470.0
# run order, title, nominal seconds out of DEFAULT_BUDGET (scaled with --budget-s)
PARTS = {
    "e": ("machine and commit", 10),
    "a": ("CUDA tests (pytest -m cuda)", 60),
    "d": ("CPU vs CUDA agreement (science level, RNG bits)", 90),
    "b": ("toy DDPM, 1000 seeds x 3 generations: throughput, phases, memory, figure5-paper", 210),
    "c": ("EDM digits loop: 2 generations, SIMS guidance, FID", 90),
}
STATUSES = ("ok", "fail", "error", "timeout", "skipped", "pending", "running", "crashed")
OUT_FILES = ("summary.json", "summary.md", "gpu_check.log", "tracebacks.txt")


# ----------------------------------------------------------------------------- shared helpers
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


def sync(device) -> None:
    import torch
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


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


class Ledger:
    """Device-synchronised wall time of every backend call and metric, by label, per generation."""

    def __init__(self, device: str):
        self.device, self.current, self.generations = device, {}, []

    def add(self, label: str, seconds: float, images: int = 0) -> None:
        entry = self.current.setdefault(label, {"calls": 0, "s": 0.0, "images": 0})
        entry["calls"] += 1
        entry["s"] += seconds
        entry["images"] += images

    def close_generation(self) -> dict:
        self.generations.append(self.current)
        self.current = {}
        return self.generations[-1]

    def timed(self, fn, label_of):
        ledger = self

        def wrapper(*args, **kwargs):
            sync(ledger.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(ledger.device)
            label, images = label_of(out, *args, **kwargs)
            ledger.add(label, time.perf_counter() - start, images)
            return out
        return wrapper


@contextlib.contextmanager
def patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def synced_phase_clock(device: str):
    """The Loop's train / synth / eval timers read the clock after a device synchronisation, so
    that work queued on a GPU is charged to the phase that queued it (without this a CUDA run's
    columns put most of the work into `eval`, whose results come back to the host)."""
    import loops.loop
    if not str(device).startswith("cuda") or not hasattr(loops.loop, "time"):
        yield False
        return

    class SyncedTime:
        """The time module, but perf_counter() waits for the device first."""

        @staticmethod
        def perf_counter():
            sync(device)
            return time.perf_counter()

        def __getattr__(self, name):
            return getattr(time, name)

    with patched(loops.loop, "time", SyncedTime()):
        yield True


def instrument_toy(ledger: Ledger):
    """Context: ToyDDPM.train / .sample and the runner's per_seed timed into `ledger`."""
    import madlab.runner
    from toy.ddpm import ToyDDPM

    def train_label(out, self, model, data, epochs, keys):
        return f"train n={data.shape[1]} epochs={epochs:g}", 0

    def sample_label(out, self, model, n, keys, guide=None, omega=0.0):
        return f"sample n={n}{' guided' if guide is not None and omega != 0 else ''}", 0

    def metric_label(out, metric, *args, **kwargs):
        return f"metric {metric}", 0

    stack = contextlib.ExitStack()
    stack.enter_context(patched(ToyDDPM, "train", ledger.timed(ToyDDPM.train, train_label)))
    stack.enter_context(patched(ToyDDPM, "sample", ledger.timed(ToyDDPM.sample, sample_label)))
    stack.enter_context(patched(madlab.runner, "per_seed",
                                ledger.timed(madlab.runner.per_seed, metric_label)))
    return stack


def gpu_memory(device: str) -> dict:
    import torch
    if not str(device).startswith("cuda"):
        return {}
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
            "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}


def reset_gpu_memory(device: str) -> None:
    import torch
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def save_frame(frame, out: Path, name: str) -> str:
    try:
        frame.to_parquet(out / f"{name}.parquet")
        return f"{name}.parquet"
    except Exception:  # no pyarrow: CSV
        frame.to_csv(out / f"{name}.csv", index=False)
        return f"{name}.csv"


def phase_table(frame) -> list[dict]:
    """Per generation: the Loop's phase columns (the same on every row of a generation)."""
    cols = [c for c in ("time_train_s", "time_synth_s", "time_eval_s") if c in frame]
    per = frame.groupby("generation")[cols].first()
    rows = []
    seeds = frame.seed.nunique()
    for t, r in per.iterrows():
        total = float(sum(r[c] for c in cols))
        rows.append({"generation": int(t), **{c[5:-2]: float(r[c]) for c in cols},
                     "total_s": total, "seed_gen_per_s": seeds / total if total > 0 else None})
    return rows


def medians(frame) -> dict:
    import numpy as np
    out = {}
    for (metric, t), g in frame.groupby(["metric", "generation"]):
        v = g.value.to_numpy(dtype=float)
        ok = np.isfinite(v)
        out.setdefault(metric, {})[int(t)] = {"median": float(np.median(v[ok])) if ok.any() else None,
                                              "mean": float(v[ok].mean()) if ok.any() else None,
                                              "non_finite": int((~ok).sum())}
    return out


# ----------------------------------------------------------------------------- part e
def part_e(args) -> dict:
    """The machine, the software, the commit (in the parent process: no part runs before it)."""
    import importlib.metadata as md
    from loops.native import cpu_model
    info: dict = {"python": platform.python_version(), "executable": sys.executable,
                  "cpu_cores": os.cpu_count(), "platform": platform.platform()}
    try:
        info["cpu_model"] = cpu_model() or "unknown"
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


# ----------------------------------------------------------------------------- part a
def part_a(args, rep: Report) -> None:
    """pytest -m cuda over the test files that mark CUDA tests."""
    import pytest
    files = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "tests").glob("test_*.py"))
             if "pytest.mark.cuda" in p.read_text()]
    rep.set(files=files)

    class Collect:
        def __init__(self):
            self.outcomes, self.collect_errors = {}, []

        def pytest_collectreport(self, report):
            if report.failed:
                self.collect_errors.append({"test": report.nodeid,
                                            "message": str(report.longrepr).strip().splitlines()[-1][:300]})

        def pytest_runtest_logreport(self, report):
            key = report.nodeid
            if report.when == "call" or (report.when == "setup" and report.outcome != "passed") \
                    or (report.when == "teardown" and report.failed):
                outcome = report.outcome if report.when != "teardown" else "error"
                message = ""
                if report.failed:
                    message = str(report.longrepr).strip().splitlines()[-1][:300]
                elif report.skipped and isinstance(report.longrepr, tuple):
                    message = report.longrepr[2]
                self.outcomes[key] = {"outcome": outcome, "message": message,
                                      "seconds": round(report.duration, 3)}

    collect = Collect()
    code = pytest.main(["-m", "cuda", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                        "--continue-on-collection-errors", "-rfEs", *files], plugins=[collect])
    counts = {k: sum(1 for o in collect.outcomes.values() if o["outcome"] == k)
              for k in ("passed", "failed", "skipped", "error")}
    failures = [{"test": k, "message": o["message"]} for k, o in collect.outcomes.items()
                if o["outcome"] in ("failed", "error")]
    skips = sorted({o["message"] for o in collect.outcomes.values() if o["outcome"] == "skipped"})
    rep.set(exit_code=int(code), **counts, collection_errors=collect.collect_errors,
            failures=failures, skip_reasons=skips,
            slowest=sorted(((o["seconds"], k) for k, o in collect.outcomes.items()), reverse=True)[:5])
    rep.headline(f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
                 f"{counts['skipped']} skipped, {len(collect.collect_errors)} collection errors "
                 f"(pytest exit code {int(code)})",
                 *[f"FAILED {f['test']}: {f['message']}" for f in failures + collect.collect_errors])
    bad = counts["failed"] or counts["error"] or collect.collect_errors
    if args.device.startswith("cuda") and counts["passed"] == 0:
        rep.note("no CUDA test passed on a CUDA run")
        bad = True
    rep.status("fail" if bad else "ok")


# ----------------------------------------------------------------------------- part b
def default_experiment(args, seeds: int, gens: int) -> dict:
    """The default experiment of Figure 5 (augment, SIMS w = 3, |D_s| = 250), or its toy size."""
    kw = dict(loop="augment", algo="sims", omega=3.0, n_real=1000, n_synth=250, n_aux=2000,
              epochs=100.0, aux_epochs=50.0, n_eval=1000, target="gaussian2d", backend="toy-ddpm",
              seeds=seeds, gens=gens, seed_chunk=max(seeds, 1), metric=["w2", "fd"])
    if args.tiny:
        kw.update(n_real=60, n_synth=15, n_aux=60, epochs=3.0, aux_epochs=2.0, n_eval=50)
    return kw


def timed_run(kw: dict, device: str, ledger: Ledger, rep: Report | None = None, key: str = "run",
              on_generation=None):
    """run_config on `device` with synchronised phase timers and the call ledger; partial
    per-generation figures go to `rep` under `key` as each generation ends, and to
    on_generation(rows)."""
    from madlab.config import RunConfig
    from madlab.runner import check_environment, run_config
    check_environment()
    cfg = RunConfig.from_flat(**kw, device=device).validate()
    seeds = cfg.seeds
    started = time.perf_counter()
    last = [started]
    progress_rows = []

    def progress(done: int, total: int) -> None:
        t = time.perf_counter()
        calls = ledger.close_generation()
        progress_rows.append({"generation": done // seeds, "wall_s": t - last[0],
                              "calls": {k: round(v["s"], 4) for k, v in calls.items()}})
        last[0] = t
        print(f"  generation {done // seeds}/{cfg.loop.gens}: {t - started:7.1f} s", flush=True)
        if rep is not None:
            rep.set(**{f"{key}_progress": progress_rows})
        if on_generation is not None:
            on_generation(progress_rows)

    with synced_phase_clock(device) as synced, instrument_toy(ledger):
        frame = run_config(cfg, progress=progress)
    return frame, {"wall_s": time.perf_counter() - started, "phases_synchronised": synced,
                   "generations": progress_rows}


def steady(rows: list[dict], seeds: int) -> dict:
    """Generations 2.. (generation 1 trains on n_real only and pays the warm-up; the last one
    makes no D_s, so synth is averaged over the generations that do)."""
    later = [r for r in rows if r["generation"] >= 2] or rows
    total = sum(r["total_s"] for r in later)
    out = {"generations": [r["generation"] for r in later], "seed_gen_per_s": seeds * len(later) / total}
    for phase in ("train", "synth", "eval"):
        use = later if phase != "synth" else ([r for r in later if r is not rows[-1]] or later)
        out[f"{phase}_s_per_gen"] = sum(r.get(phase, 0.0) for r in use) / len(use)
    return out


def mean_calls(progress: list[dict]) -> dict:
    """Seconds per generation of each call label, over generations 2.. (all if only one)."""
    gens = [g for g in progress if g["generation"] >= 2] or progress
    labels = {k for g in gens for k in g["calls"]}
    return {k: sum(g["calls"].get(k, 0.0) for g in gens) / len(gens) for k in sorted(labels)}


def part_b(args, rep: Report) -> None:
    import torch
    dev = args.device
    seeds = args.seeds or (8 if args.tiny else 1000)
    gens = args.gens or (2 if args.tiny else 3)
    kw = default_experiment(args, seeds, gens)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] or ["auto"]
    os.environ.setdefault("MADLAB_OT", "auto")
    os.environ["MADLAB_KERNELS"] = variants[0]
    rep.set(config={k: v for k, v in kw.items()}, device=dev, ot_solver=os.environ["MADLAB_OT"],
            kernels=variants[0], torch_threads=torch.get_num_threads())
    # 1. the default experiment, product path
    ledger = Ledger(dev)
    reset_gpu_memory(dev)

    def preliminary(progress_rows):   # a figure even if the run does not finish in its budget
        if len(progress_rows) >= 2:
            with contextlib.suppress(Exception):
                rep.set(figure5_paper_preliminary=extrapolate_figure5(
                    kw, seeds, mean_calls(progress_rows), {}))
    frame, info = timed_run(kw, dev, ledger, rep, "main", on_generation=preliminary)
    rows = phase_table(frame)
    st = steady(rows, seeds)
    calls = mean_calls(info["generations"])
    rep.set(main={"wall_s": info["wall_s"], "phases_synchronised": info["phases_synchronised"],
                  "per_generation": rows, "steady": st, "calls_s_per_gen": calls,
                  "gpu_memory": gpu_memory(dev), "medians": medians(frame)},
            rows_file=save_frame(frame, args.out, "toy_rows"))
    g1 = rows[0]
    rep.headline(f"{seeds} seeds x {gens} generations on {dev}: steady {st['seed_gen_per_s']:.1f} "
                 f"seed-gen/s (generations {st['generations'][0]}..{st['generations'][-1]}); "
                 f"generation 1 (warm-up, |D| = n_real) {g1['seed_gen_per_s']:.1f}",
                 f"per generation (steady): train {st['train_s_per_gen']:.2f} s, synth "
                 f"{st['synth_s_per_gen']:.2f} s, eval {st['eval_s_per_gen']:.2f} s; wall "
                 f"{info['wall_s']:.1f} s in all",
                 "calls per generation: " + ", ".join(f"{k} {v:.2f} s" for k, v in calls.items()),
                 f"GPU memory: {gpu_memory(dev) or 'n/a (CPU)'}")
    status = "ok"
    if not all(m["non_finite"] == 0 for per in medians(frame).values() for m in per.values()):
        rep.note("non-finite distances in the main run (a diverged seed): see medians")
    deadline = args.deadline
    # 2. probes for the extrapolation: training cost against |D|
    probes = {}
    try:
        if time.time() < deadline - 30:
            probes = train_probes(kw, dev, seeds)
            rep.set(probes=probes)
    except Exception as err:  # noqa: BLE001
        rep.substep_failed("probes", err)
        status = "fail"
    try:
        extra = extrapolate_figure5(kw, seeds, calls, probes)
        rep.set(figure5_paper=extra)
        rep.headline(extra["headline"] + (" [tiny run: meaningless]" if args.tiny else ""))
    except Exception as err:  # noqa: BLE001
        rep.substep_failed("extrapolation", err)
        status = "fail"
    # 3. OT solvers at 1000 seeds
    try:
        if time.time() < deadline - 40:
            ot = compare_ot(args, dev)
            rep.set(ot_solvers=ot)
            rep.headline(ot["headline"])
        else:
            rep.note("OT comparison skipped: too little time left")
    except Exception as err:  # noqa: BLE001
        rep.substep_failed("OT comparison", err)
        status = "fail"
    # 4. step implementations side by side (item 3: eager today; compile / graph when they exist)
    results = []
    for variant in variants[1:]:
        entry = {"variant": variant}
        try:
            os.environ["MADLAB_KERNELS"] = variant
            from madlab.runner import check_environment
            try:
                check_environment()
            except Exception as err:  # noqa: BLE001 -- ConfigError: not implemented yet
                entry.update(status="not implemented", why=one_line(err))
                rep.headline(f"variant {variant}: not implemented ({entry['why']})")
                results.append(entry)
                rep.set(variants=results)
                continue
            if time.time() > deadline - 1.3 * info["wall_s"] - 10:
                entry.update(status="skipped: too little time left")
                rep.headline(f"variant {variant}: skipped, too little time left")
            else:
                v_ledger = Ledger(dev)
                reset_gpu_memory(dev)
                v_frame, v_info = timed_run(kw, dev, v_ledger)
                v_rows = phase_table(v_frame)
                v_st = steady(v_rows, seeds)
                same, same_ok = agreement(v_frame, frame, "variant", "first")
                entry.update(status="ok" if same_ok else "fail", steady=v_st, per_generation=v_rows,
                             calls_s_per_gen=mean_calls(v_info["generations"]),
                             gpu_memory=gpu_memory(dev), medians=medians(v_frame),
                             agreement_with_first=same,
                             speedup_vs_first=v_st["seed_gen_per_s"] / st["seed_gen_per_s"])
                rep.headline(f"variant {variant}: {v_st['seed_gen_per_s']:.1f} seed-gen/s "
                             f"({entry['speedup_vs_first']:.2f}x of {variants[0]}); medians "
                             f"{'within' if same_ok else 'OUTSIDE'} the bootstrap band of {variants[0]}'s")
                if not same_ok:
                    status = "fail"
        except Exception as err:  # noqa: BLE001
            entry.update(status="error", why=one_line(err))
            rep.substep_failed(f"variant {variant}", err)
        results.append(entry)
        rep.set(variants=results)
    os.environ["MADLAB_KERNELS"] = variants[0]
    rep.status(status)


def train_probes(kw: dict, dev: str, seeds: int) -> dict:
    """Seconds per training epoch of the toy DDPM at |D| = n_real + |D_s| for the preset's
    smallest and largest |D_s| (10 epochs after a warm-up), all seeds as in the main run."""
    from loops.rng import SeedStreams
    from madlab.config import RunConfig
    from toy.ddpm import ToyDDPM
    from toy.targets import make_target
    cfg = RunConfig.from_flat(**kw, device=dev)
    backend = ToyDDPM(cfg.ddpm(), dim=2)
    streams = SeedStreams(range(seeds), device=dev)
    model = backend.init(streams.keys("init", 1))
    target = make_target(cfg.target)
    out = {}
    for n in sorted({kw["n_real"] + kw["n_synth"] // 2, kw["n_real"] + kw["n_synth"] * 4}):
        data = target.sample(n, streams.keys("real", n))
        backend.train(model, data, 2, streams.keys("train", n))       # warm-up at this shape
        sync(dev)
        start = time.perf_counter()
        backend.train(model, data, 10, streams.keys("train", n, 1))
        sync(dev)
        out[str(n)] = (time.perf_counter() - start) / 10
    return {"train_s_per_epoch_by_n": out, "seeds": seeds}


def _fit_line(points: dict[float, float]):
    """(a, b) of a + b x through the first and last of {x: y} (one point: through the origin)."""
    xs, ys = list(points), list(points.values())
    if len(xs) < 2 or xs[-1] == xs[0]:
        return 0.0, ys[0] / xs[0]
    b = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    return ys[0] - b * xs[0], b


def extrapolate_figure5(kw: dict, seeds: int, calls: dict, probes: dict) -> dict:
    """figure5-paper's wall time on this device, from the main run's measured calls.

    Per generation of a configuration (|D_s|, w), as the Loop runs it: base training on
    |D^t| = n_real + |D_s| rows (n_real in generation 1), the auxiliary sample (n_aux points,
    unguided) and its fine-tune (n_aux rows), D_s (|D_s| points, guided unless w = 0; none in the
    last generation), the evaluation sample (n_eval points, guided unless w = 0) and the metric.
    Measured directly, the same in every configuration of the preset: the auxiliary sample, the
    fine-tune, the metric (W2 by the auction, or fd). Scaled from the measured base training:
    by the per-epoch cost's growth with |D| measured by two probes (else in proportion to |D|).
    Guided sampling: linear in the points through the two measured sizes (|D_s| and n_eval);
    unguided sampling: the guided line times the measured ratio at n_aux (about 1/2: one network
    instead of two). Seeds: the preset's 1000 per configuration against the measured run's (its
    tasks of 250 seeds are assumed as fast per seed as 1000: on a GPU run them with seed_chunk
    1000)."""
    from madlab import presets
    spec = presets.load("figure5-paper")
    points = spec.configs()
    n_real, n_s, n_aux, n_eval = kw["n_real"], kw["n_synth"], kw["n_aux"], kw["n_eval"]
    epochs = kw["epochs"]

    def call(label):
        return calls.get(label)

    base_n = n_real + n_s
    base = call(f"train n={base_n} epochs={epochs:g}")
    finetune = call(f"train n={n_aux} epochs={kw['aux_epochs']:g}") or 0.0
    aux_sample = call(f"sample n={n_aux}") or 0.0
    guided = {float(n): call(f"sample n={n} guided") for n in sorted({n_s, n_eval})}
    guided = {n: v for n, v in guided.items() if v is not None}
    w2_s, fd_s = call("metric w2") or 0.0, call("metric fd") or 0.0
    by_n = {float(k): v for k, v in sorted((probes.get("train_s_per_epoch_by_n") or {}).items(),
                                           key=lambda kv: float(kv[0]))}
    if base is None:
        raise ValueError(f"no base training call at |D| = {base_n} in the main run: {sorted(calls)}")
    if len(by_n) >= 2:
        a_tr, b_tr = _fit_line(by_n)
        train_model = "per-epoch cost linear in |D|, slope from two probes, anchored at the base call"
    else:
        a_tr, b_tr = 0.0, 1.0
        train_model = "in proportion to |D|, anchored at the base call (no probes)"
    a_s, b_s = _fit_line(guided)
    unguided_ratio = aux_sample / max(a_s + b_s * n_aux, 1e-12)

    def train_base(n):
        return base * max(a_tr + b_tr * n, 0.0) / max(a_tr + b_tr * base_n, 1e-12)

    def sample(n, guide):
        g = max(a_s + b_s * n, 0.0)
        return g if guide else g * unguided_ratio

    total = {"w2": 0.0, "fd": 0.0}
    configs = []
    for point, cfg in points:
        scale = cfg.seeds / seeds
        w, ds, G = cfg.algo.omega, cfg.loop.n_synth, cfg.loop.gens
        sims = cfg.algo.name != "standard"
        fixed = (aux_sample + finetune) if sims else 0.0
        guide = sims and w != 0
        evals = sample(cfg.evaluation.n_eval, guide)
        gen1 = train_base(cfg.loop.n_real) + fixed + sample(ds, guide) + evals
        later = train_base(cfg.loop.n_real + ds) + fixed + sample(ds, guide) + evals
        last = later - sample(ds, guide)
        configs.append({"n_synth": ds, "omega": w, "s_per_gen_steady_fd": (later + fd_s) * scale})
        for metric, m in (("w2", w2_s), ("fd", fd_s)):
            total[metric] += (gen1 + (G - 2) * later + last + G * m) * scale
    seed_gens = sum(c.seeds * c.loop.gens for _, c in points)
    headline = (f"figure5-paper extrapolated ({len(points)} configurations, {seed_gens:,} "
                f"seed-generations): {total['w2'] / 3600:.2f} h with exact W2 (auction), "
                f"{total['fd'] / 3600:.2f} h with fd (target: <= 1 h with exact W2)")
    return {"hours_w2": total["w2"] / 3600, "hours_fd": total["fd"] / 3600,
            "seed_gen_per_s_w2": seed_gens / total["w2"] if total["w2"] else None,
            "configurations": len(points), "seed_generations": seed_gens,
            "measured_s_per_gen": {"base_train": base, "finetune": finetune,
                                   "aux_sample_unguided": aux_sample, "guided_sample": guided,
                                   "metric_w2": w2_s, "metric_fd": fd_s},
            "train_model": train_model, "train_probe_fit_s_per_epoch": [a_tr, b_tr],
            "guided_sample_fit_s": [a_s, b_s], "unguided_over_guided_at_n_aux": unguided_ratio,
            "per_configuration": configs, "headline": headline,
            "assumptions": " ".join(extrapolate_figure5.__doc__.split("\n\n", 1)[1].split())}


def compare_ot(args, dev: str) -> dict:
    """Exact W2 of N seeds x n points: the auction batched on `dev`, POT on the host's cores
    (per_seed with MADLAB_OT=pot in cpu_count threads), torch-linear-assignment on `dev`."""
    from analysis.distances import per_seed, wasserstein_batch
    from benchmarks.ot_solvers import model_like, rounds_of_auction
    N, n = (6, 120) if args.tiny else (1000, 1000)
    x, y = model_like(N, n)
    xd, yd = x.to(dev), y.to(dev)
    out: dict = {"seeds": N, "points": n, "device": dev}

    def timed(fn):
        sync(dev)
        start = time.perf_counter()
        value = fn()
        sync(dev)
        return value, time.perf_counter() - start

    wasserstein_batch(xd[:2], yd[:2])  # warm-up
    auction, t_auction = timed(lambda: wasserstein_batch(xd, yd) ** 2)
    out["auction_s"] = t_auction
    ref, ref_name = auction, "auction"
    try:
        import ot  # noqa: F401
        old = os.environ.get("MADLAB_OT")
        os.environ["MADLAB_OT"] = "pot"
        try:
            pot, t_pot = timed(lambda: per_seed("w2", x, y, n_jobs=os.cpu_count() or 1) ** 2)
        finally:
            os.environ["MADLAB_OT"] = old or "auto"
        out.update(pot_s=t_pot, pot_threads=os.cpu_count())
        ref, ref_name = pot, "POT"
    except ImportError:
        out["pot_s"] = "POT not importable"
    out["auction_max_rel_diff"] = float(((auction - ref) / ref).abs().max())
    try:
        from torch_linear_assignment import batch_linear_assignment
        from analysis.assignment import sq_euclidean

        def tla():
            C = sq_euclidean(xd, yd)
            col = batch_linear_assignment(C)
            return C.gather(2, col[..., None]).mean((1, 2)).cpu()
        C2 = sq_euclidean(xd[:2], yd[:2])
        batch_linear_assignment(C2)  # warm-up (Triton compiles)
        value, t_tla = timed(tla)
        out.update(tla_s=t_tla, tla_max_rel_diff=float(((value - ref) / ref).abs().max()))
    except ImportError:
        out["tla_s"] = "torch-linear-assignment not importable"
    if time.time() < args.deadline - 2 * t_auction - 10:
        out["auction_rounds"] = rounds_of_auction(xd, yd)
    parts = [f"auction on {dev} {t_auction:.2f} s"]
    if isinstance(out.get("pot_s"), float):
        parts.append(f"POT on {out['pot_threads']} host threads {out['pot_s']:.2f} s")
    if isinstance(out.get("tla_s"), float):
        parts.append(f"torch-linear-assignment {out['tla_s']:.2f} s")
    out["headline"] = (f"exact W2, {N} seeds x {n} points: " + ", ".join(parts) +
                       f"; auction vs {ref_name} max rel. diff of W2^2 {out['auction_max_rel_diff']:.1e}")
    out["reference"] = ref_name
    return out


# ----------------------------------------------------------------------------- part c
def part_c(args, rep: Report) -> None:
    """The EDM backend on digits through run_config: 2 generations, SIMS, FID (classifier)."""
    import torch
    from loops.rng import SeedStreams
    from madlab.edm.backend import EDMBackend
    from madlab.edm.config import EDMConfig
    from madlab.edm.data import ImageTarget, load_images_cached
    dev = args.device
    os.environ.setdefault("MADLAB_CACHE", tempfile.mkdtemp(prefix="madlab_cache_"))
    net = "tiny" if args.tiny else args.edm_net
    batch, steps = (16, 3) if args.tiny else (256, 18)
    n_real, n_synth, n_aux, n_eval = (48, 16, 16, 40) if args.tiny else (1797, 900, 1797, 2000)
    omega = 0.8
    if dev.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    # probe: training and sampling images/s of this net, to size the kimg budget to the time left
    target = ImageTarget(load_images_cached("digits"))
    streams = SeedStreams([0], device=dev)
    real = target.sample(n_real, streams.keys("real"))
    backend = EDMBackend(EDMConfig(net=net, batch_size=batch, budget="kimg", num_steps=steps,
                                   device=dev).validate(), target.event_shape)
    model = backend.init(streams.keys("init"))
    n_params = sum(p.numel() for p in model.nets[0].parameters())
    probe_kimg = batch * (2 if args.tiny else 20) / 1000
    backend.train(model, real, probe_kimg / 4, streams.keys("train", 0, 1))   # warm-up
    sync(dev)
    t0 = time.perf_counter()
    backend.train(model, real, probe_kimg, streams.keys("train", 0, 2))
    sync(dev)
    train_rate = probe_kimg * 1000 / (time.perf_counter() - t0)
    backend.sample(model, 8, streams.keys("eval", 0, 1))
    n_probe = 16 if args.tiny else 500
    t0 = time.perf_counter()
    backend.sample(model, n_probe, streams.keys("eval", 0, 2))
    sync(dev)
    sample_rate = n_probe / (time.perf_counter() - t0)
    left = args.deadline - time.time()
    fixed = 2 * (n_aux + 2 * (n_synth + n_eval)) / sample_rate + 20   # sampling + FID features
    per_kimg = 2 * 1.25 * 1000 / train_rate                            # base + aux (1/4)
    kimg = max(0.05 if args.tiny else 5.0, min(500.0, (0.6 * left - fixed) / per_kimg))
    if args.tiny:
        kimg = 0.05
    rep.set(net=net, params_M=n_params / 1e6, batch=batch, heun_steps=steps, omega=omega,
            probe={"train_images_per_s": train_rate, "sample_images_per_s": sample_rate},
            kimg_base=kimg, kimg_aux=kimg / 4, time_left_s=left)
    rep.headline(f"net {net} ({n_params / 1e6:.2f} M parameters), probe: {train_rate:,.0f} train "
                 f"images/s, {sample_rate:,.0f} sample images/s ({2 * steps - 1} NFE); budget "
                 f"{kimg:.1f} kimg base + {kimg / 4:.1f} kimg aux per generation")
    kw = dict(backend="edm", dataset="digits", edm_net=net, loop="augment", algo="sims",
              omega=omega, gens=2, seeds=1, n_real=n_real, n_synth=n_synth, n_aux=n_aux,
              epochs=kimg, aux_epochs=kimg / 4, edm_budget="kimg", n_eval=n_eval, edm_steps=steps,
              edm_batch=batch, edm_ema_kimg=min(2.0, kimg / 10), metric=["fid"],
              fid_features="classifier")
    ledger = Ledger(dev)

    def train_label(out, self, model, data, epochs, keys):
        B = min(self.config.batch_size, data.shape[1])
        images = math.ceil(self.budget_images(epochs, data.shape[1]) / B) * B * data.shape[0]
        return f"train n={data.shape[1]} kimg={epochs:g}", images

    def sample_label(out, self, model, n, keys, guide=None, omega=0.0):
        return f"sample{' guided' if guide is not None and omega != 0 else ''}", n * len(keys)

    reset_gpu_memory(dev)
    from madlab.config import RunConfig
    from madlab.runner import run_config
    cfg = RunConfig.from_flat(**kw, device=dev).validate()
    gen_rows = []

    def progress(done, total):
        calls = ledger.close_generation()
        gen_rows.append({k: {"s": v["s"], "images": v["images"],
                             "images_per_s": v["images"] / v["s"] if v["s"] > 0 else None}
                         for k, v in calls.items()})
        rep.set(calls_by_generation=gen_rows)

    with synced_phase_clock(dev), patched(EDMBackend, "train", ledger.timed(EDMBackend.train, train_label)), \
            patched(EDMBackend, "sample", ledger.timed(EDMBackend.sample, sample_label)):
        frame = run_config(cfg, progress=progress)
    fid = {int(r.generation): float(r.value) for r in frame[frame.metric == "fid"].itertuples()}
    rates = {}
    for kind in ("train", "sample guided", "sample"):
        s = sum(v["s"] for g in gen_rows for k, v in g.items() if k.startswith(kind)
                and (kind != "sample" or "guided" not in k))
        im = sum(v["images"] for g in gen_rows for k, v in g.items() if k.startswith(kind)
                 and (kind != "sample" or "guided" not in k))
        rates[kind] = im / s if s > 0 else None
    rep.set(fid_by_generation=fid, images_per_s=rates, phases=phase_table(frame),
            gpu_memory=gpu_memory(dev), rows_file=save_frame(frame, args.out, "edm_rows"))
    rep.headline(f"FID (classifier features, {n_eval} samples vs all digits) by generation: "
                 + ", ".join(f"G{t} {v:.3f}" for t, v in fid.items()),
                 "images/s: training {:,.0f}, sampling unguided {:,.0f}, SIMS-guided {:,.0f}".format(
                     *(rates[k] or float("nan") for k in ("train", "sample", "sample guided"))))
    ok = len(fid) == 2 and all(math.isfinite(v) and v > 0 for v in fid.values())
    rep.status("ok" if ok else "fail")


# ----------------------------------------------------------------------------- part d
def _cpu_chunk(kw: dict, first_seed: int, seeds: int):
    """One CPU worker of part d: a chunk of the seeds, one torch thread (seeds are independent:
    a seed's numbers do not depend on its chunk)."""
    import torch
    torch.set_num_threads(1)
    try:
        import ot  # noqa: F401
        os.environ["MADLAB_OT"] = "pot"
    except ImportError:
        os.environ["MADLAB_OT"] = "auction"
    from madlab.config import RunConfig
    from madlab.runner import run_config
    cfg = RunConfig.from_flat(**{**kw, "seeds": seeds, "first_seed": first_seed, "seed_chunk": seeds},
                              device="cpu").validate()
    return run_config(cfg)


def agreement(one, other, name: str, other_name: str) -> tuple[list[dict], bool]:
    """Per metric and generation: the medians over seeds of two runs of the same seeds, within
    3 sqrt(se^2 + se'^2) (bootstrap standard errors of the medians); and the paired per-seed
    relative differences, for information."""
    import numpy as np
    comparisons, ok = [], True
    for (metric, t), g in one.groupby(["metric", "generation"]):
        a = g.sort_values("seed").value.to_numpy(dtype=float)
        h = other[(other.metric == metric) & (other.generation == t)].sort_values("seed")
        b = h.value.to_numpy(dtype=float)
        if len(a) != len(b) or not len(a):
            comparisons.append({"metric": metric, "generation": int(t), "within": False,
                                "why": f"{len(a)} seeds against {len(b)}"})
            ok = False
            continue
        fa, fb = np.isfinite(a), np.isfinite(b)
        ma = float(np.median(a[fa])) if fa.any() else float("nan")
        mb = float(np.median(b[fb])) if fb.any() else float("nan")
        band = 3 * math.hypot(bootstrap_se_median(a), bootstrap_se_median(b))
        within = ma == mb or abs(ma - mb) <= band
        both = fa & fb
        rel = np.abs(a[both] - b[both]) / np.maximum(np.abs(b[both]), 1e-300)
        comparisons.append({"metric": metric, "generation": int(t), f"median_{name}": ma,
                            f"median_{other_name}": mb, "diff": ma - mb, "band": band,
                            "within": bool(within),
                            "non_finite": {name: int((~fa).sum()), other_name: int((~fb).sum())},
                            "paired_rel_diff_median": float(np.median(rel)) if len(rel) else None,
                            "paired_rel_diff_max": float(rel.max()) if len(rel) else None,
                            "share_seeds_within_1e-3": float((rel < 1e-3).mean()) if len(rel) else None})
        ok &= bool(within)
    return comparisons, ok


def describe(c: dict, name: str, other_name: str) -> str:
    head = f"{c['metric']} G{c['generation']}: "
    if "band" not in c:
        return head + f"not compared ({c.get('why')})"
    paired = c["paired_rel_diff_median"]
    return (head + f"median {name} {c['median_device' if 'median_device' in c else 'median_variant']:.4f} "
            f"vs {other_name} {c['median_cpu' if 'median_cpu' in c else 'median_first']:.4f} (band "
            f"+-{c['band']:.4f}) {'ok' if c['within'] else 'OUTSIDE'}; paired rel. diff median "
            + (f"{paired:.1e}" if paired is not None else "-"))


def bootstrap_se_median(v, reps: int = 2000, seed: int = 0) -> float:
    import numpy as np
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return float("nan")
    idx = np.random.default_rng(seed).integers(0, len(v), (reps, len(v)))
    return float(np.median(v[idx], axis=1).std())


def rng_bits(dev: str) -> dict:
    """Philox draws of the same keys on the CPU (C kernel, or torch ops) and on `dev` (torch ops):
    equal bits, per kind, and a training-sized draw through StreamKeys."""
    import torch
    from loops import philox
    from loops.rng import SeedStreams
    keys = SeedStreams(range(64)).keys("train", 1)
    out = {}
    for kind, name in enumerate(("uniform32", "normal32", "uniform64", "normal64")):
        a = philox.draw(keys.keys, kind, 7, 100_003)
        if dev.startswith("cuda"):
            b = philox.draw(keys.on(dev), kind, 7, 100_003).cpu()
        else:  # the CPU check of the same claim: C kernel against torch ops
            b = philox.draw_torch(keys.keys, kind, 7, 100_003)
        out[name] = {"equal": bool(torch.equal(a, b)), "mismatches": int((a != b).sum())}
    a = keys.randn((8, 1250, 4))
    b = keys.randn((8, 1250, 4), device=dev).cpu()
    out["streamkeys_randn_train_shape"] = {"equal": bool(torch.equal(a, b)), "mismatches": int((a != b).sum())}
    return out


def part_d(args, rep: Report) -> None:
    import pandas as pd
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from benchmarks.gpu_check import _cpu_chunk  # by its module's name: spawned workers import it
    dev = args.device
    # 1. the bits
    bits = rng_bits(dev)
    bits_ok = all(v["equal"] for v in bits.values())
    rep.set(rng_bits=bits, rng_bits_equal=bits_ok)
    rep.headline(f"Philox bits {'equal' if bits_ok else 'DIFFER'} on cpu and {dev} "
                 f"({', '.join(k for k, v in bits.items() if not v['equal']) or 'all kinds'})")
    # 2. the science
    seeds, gens = (6, 2) if args.tiny else (64, 3)
    kw = default_experiment(args, seeds, gens)
    workers = 2 if args.tiny else max(1, min(16, (os.cpu_count() or 2) - 1))
    chunk = math.ceil(seeds / workers)
    rep.set(config=kw, cpu_workers=workers)
    started = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_cpu_chunk, kw, s, min(chunk, seeds - s)) for s in range(0, seeds, chunk)]
        os.environ.setdefault("MADLAB_OT", "auto")
        ledger = Ledger(dev)
        gpu, info = timed_run(kw, dev, ledger)
        gpu_s = time.perf_counter() - started
        cpu = pd.concat([f.result() for f in futures], ignore_index=True)
    cpu_s = time.perf_counter() - started
    gpu["device"], cpu["device"] = dev, "cpu"
    both = pd.concat([gpu, cpu], ignore_index=True)
    rep.set(rows_file=save_frame(both, args.out, "agreement_rows"), wall_s={dev: gpu_s, "cpu (all)": cpu_s})
    comparisons, ok = agreement(gpu, cpu, "device", "cpu")
    rep.set(comparisons=comparisons, band_rule=(
        f"|median_device - median_cpu| <= 3 sqrt(se_device^2 + se_cpu^2) (device = {dev}), se = "
        "bootstrap standard error of the median over seeds (2000 resamples); the runs share keys "
        "and data, so treating them as independent makes the band conservative"))
    rep.headline(*[describe(c, dev, "cpu") for c in comparisons])
    rep.status("ok" if ok and bits_ok else "fail")


PART_FUNCS = {"a": part_a, "b": part_b, "c": part_c, "d": part_d}


# ----------------------------------------------------------------------------- the parent
class Check:
    """Runs the parts in turn, each in a child process under its budget, and keeps OUT's
    summary current."""

    def __init__(self, args):
        self.args, self.out = args, Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.log = open(self.out / "gpu_check.log", "a", buffering=1)
        self.started = time.time()
        self.proc = None
        signal.signal(signal.SIGTERM, self.terminated)
        self.summary = {"check": "madlab GPU check (issue 12)", "started": now(), "finished": None,
                        "device": args.device, "tiny": args.tiny, "budget_s": args.budget_s,
                        "argv": sys.argv[1:], "status": "running",
                        "parts": {p: {"title": PARTS[p][0], "status": "pending" if p in args.parts
                                      else "skipped", "seconds": None, "budget_s": None,
                                      "results": {}, "notes": [] if p in args.parts else ["not requested"],
                                      "error": None} for p in sorted(PARTS)}}
        self.write()

    def say(self, text: str) -> None:
        line = f"[{now()}] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def write(self) -> None:
        write_json(self.out / "summary.json", self.summary)
        (self.out / "summary.md").write_text(render_markdown(self.summary))

    def budget(self, part: str) -> float:
        scale = self.args.budget_s / DEFAULT_BUDGET
        later = [p for p in list(PARTS)[list(PARTS).index(part) + 1:] if p in self.args.parts]
        left = self.args.budget_s - (time.time() - self.started)
        reserve = sum(PARTS[p][1] * scale for p in later)   # the later parts' nominal budgets
        nominal = PARTS[part][1] * scale
        # this part's share and whatever earlier parts left unused, but never so much that the
        # later parts get under 60 % of theirs
        return max(5.0, min(max(nominal, left - reserve), left - 0.6 * reserve))

    def record(self, part: str, data: dict, seconds: float, budget: float) -> None:
        entry = self.summary["parts"][part]
        entry.update(seconds=round(seconds, 1), budget_s=round(budget, 1))
        for key in ("status", "results", "notes", "error"):
            if key in data:
                entry[key] = data[key]
        if data.get("substep_errors"):
            entry["substep_errors"] = [{k: v for k, v in e.items() if k != "traceback"}
                                       for e in data["substep_errors"]]
        self.write()

    def traceback(self, part: str, text: str) -> None:
        with open(self.out / "tracebacks.txt", "a") as f:
            f.write(f"==== part {part}: {PARTS[part][0]} ({now()})\n{text.rstrip()}\n\n")

    def run_header(self) -> bool:
        start = time.time()
        self.summary["parts"]["e"]["status"] = "running"
        self.write()
        try:
            info = part_e(self.args)
            gpu = info.get("gpu", {})
            headline = [f"GPU: {gpu.get('name', 'none')} (capability {gpu.get('capability', '-')}, "
                        f"{gpu.get('memory_gib', '-')} GiB); nvidia-smi: {info['nvidia_smi'] or 'n/a'}",
                        f"torch {info['torch']} (CUDA {info['torch_cuda']}), python {info['python']}, "
                        f"{info['cpu_cores']} CPU cores ({info.get('cpu_model', '?')}), C compiler: {info['c_compiler']}",
                        f"commit {info['commit']} ({info['uncommitted_files']} uncommitted files), "
                        f"source digest {info['source_digest']}",
                        "packages: " + ", ".join(f"{k} {v or 'MISSING'}" for k, v in info["packages"].items())]
            info["headline"] = headline
            status, error = "ok", None
            if self.args.device.startswith("cuda") and not info["cuda_available"]:
                status, error = "fail", f"--device {self.args.device}, but torch sees no CUDA device"
            for line in headline:
                self.say(f"  {line}")
            self.record("e", {"status": status, "results": info, "error": error}, time.time() - start, 0)
            return status == "ok"
        except Exception as err:  # noqa: BLE001
            self.traceback("e", traceback.format_exc())
            self.record("e", {"status": "error", "error": one_line(err)}, time.time() - start, 0)
            return not self.args.device.startswith("cuda")

    def run_part(self, part: str) -> None:
        budget = self.budget(part)
        path = self.work / f"{part}.json"
        deadline = time.time() + budget
        cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--child", part, "--child-file", str(path),
               "--deadline", str(deadline), *self.args.passthrough]
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self.say(f"part {part}: {PARTS[part][0]} -- budget {budget:.0f} s")
        self.summary["parts"][part].update(status="running", budget_s=round(budget, 1))
        self.write()
        start = time.time()
        self.log.flush()
        proc = self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        seen, timed_out = 0.0, False
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            if path.exists() and path.stat().st_mtime != seen:   # partial results, as they come
                seen = path.stat().st_mtime
                with contextlib.suppress(ValueError, OSError):
                    self.record(part, json.loads(path.read_text()), time.time() - start, budget)
            if time.time() > deadline:
                timed_out = True
                self.kill(proc)
                break
        data = {}
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(path.read_text())
        if timed_out:
            data.update(status="timeout", error=f"ran past its budget of {budget:.0f} s: killed; "
                        "partial results kept")
        elif data.get("status") in (None, "running"):
            data.update(status="crashed", error=f"the part's process ended with exit code "
                        f"{proc.returncode} before reporting; see gpu_check.log")
        if data.get("traceback"):
            self.traceback(part, data["traceback"])
        for sub in data.get("substep_errors", []):
            self.traceback(part, f"(sub-step {sub['step']})\n{sub['traceback']}")
        data.pop("traceback", None)
        self.record(part, data, time.time() - start, budget)
        self.say(f"part {part}: {data.get('status')} in {time.time() - start:.1f} s"
                 + (f" -- {data['error']}" if data.get("error") else ""))

    def terminated(self, signum, frame) -> None:
        """Killed from outside (the device tool's limit): end the running part's processes too,
        and leave the summary saying so."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.summary.update(status="terminated", finished=now())
        self.write()
        sys.exit(143)

    @staticmethod
    def kill(proc) -> None:
        """The part's process group (its own session: pool workers and pytest children too)."""
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def run(self) -> int:
        self.say(f"madlab GPU check: parts {','.join(self.args.parts)}, device {self.args.device}, "
                 f"budget {self.args.budget_s:.0f} s{' (tiny)' if self.args.tiny else ''}; out {self.out}")
        can_go = self.run_header() if "e" in self.args.parts else True
        for part in PARTS:
            if part == "e" or part not in self.args.parts:
                continue
            if not can_go:
                self.record(part, {"status": "skipped", "error": "no CUDA device (see part e)"}, 0, 0)
                continue
            self.run_part(part)
        statuses = [p["status"] for p in self.summary["parts"].values() if p["status"] != "skipped"]
        self.summary.update(finished=now(), seconds=round(time.time() - self.started, 1),
                            status="ok" if all(s == "ok" for s in statuses) else "fail")
        self.write()
        self.say(f"done in {time.time() - self.started:.0f} s: {self.summary['status']}")
        print("\n" + (self.out / "summary.md").read_text(), flush=True)
        self.log.close()
        return 0 if self.summary["status"] == "ok" else 1


def render_markdown(summary: dict) -> str:
    lines = [f"# madlab GPU check: {summary['status']}", "",
             f"device {summary['device']}{' (tiny)' if summary['tiny'] else ''}, budget "
             f"{summary['budget_s']:.0f} s, started {summary['started']}, finished {summary['finished'] or '-'}"
             + (f" ({summary.get('seconds')} s)" if summary.get("seconds") else ""), ""]
    lines += ["| part | what | status | s / budget |", "|---|---|---|---|"]
    for key, p in summary["parts"].items():
        sec = "-" if p["seconds"] is None else f"{p['seconds']} / {p['budget_s'] or '-'}"
        lines.append(f"| {key} | {p['title']} | {p['status']} | {sec} |")
    for key in ("e", "a", "d", "b", "c"):
        p = summary["parts"][key]
        lines += ["", f"## {key}. {p['title']}: {p['status']}"]
        if p.get("error"):
            lines.append(f"error: {p['error']}")
        for sub in p.get("substep_errors", []):
            lines.append(f"sub-step {sub['step']} failed: {sub['error']}")
        for line in (p.get("results") or {}).get("headline", []):
            lines.append(f"- {line}")
        for note in p.get("notes") or []:
            lines.append(f"- note: {note}")
    lines += ["", "Everything else: summary.json (per generation, per call, per configuration)."]
    return "\n".join(lines) + "\n"


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", help="output folder (summary.json, summary.md, log, tables)")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET,
                    help="seconds for all parts together (default 470: the check ends within 8 minutes)")
    ap.add_argument("--parts", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--tiny", action="store_true", help="every part at toy size (CPU: a minute or two)")
    ap.add_argument("--seeds", type=int, default=0, help="part b: seeds (default 1000; tiny 8)")
    ap.add_argument("--gens", type=int, default=0, help="part b: generations (default 3; tiny 2)")
    ap.add_argument("--variants", default="auto", help=(
        "part b: step implementations to run side by side, MADLAB_KERNELS values, the first is the "
        "main run (e.g. auto,compile,graph; a value toy/ddpm.py does not know is reported as not "
        "implemented)"))
    ap.add_argument("--edm-net", default="medium", help="part c: U-Net size (default medium)")
    ap.add_argument("--commit", default="", help="the commit, where .git does not travel")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--plant", default="", help=argparse.SUPPRESS)  # tests: a:error,c:hang
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out DIR is required")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        ap.error(f"unknown parts {unknown}; choose from {','.join(sorted(PARTS))}")
    if args.budget_s <= 0:
        ap.error("--budget-s must be positive")
    args.parts = parts
    args.out = Path(args.out)
    args.passthrough = ["--out", str(args.out), "--device", args.device, "--seeds", str(args.seeds),
                        "--gens", str(args.gens), "--variants", args.variants, "--edm-net", args.edm_net,
                        "--commit", args.commit, "--plant", args.plant] + (["--tiny"] if args.tiny else [])
    return args


def watchdog(deadline: float) -> None:
    """The part's process ends itself if the check that started it is gone (killed from
    outside: its children run in their own session) or 30 s after its deadline."""
    import threading
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(2.0)
            if os.getppid() != parent or time.time() > deadline + 30:
                os.killpg(os.getpgrp(), signal.SIGKILL)   # this part's own process group
    threading.Thread(target=watch, daemon=True).start()


def child(args) -> int:
    watchdog(args.deadline)
    rep = Report(Path(args.child_file), args.child)
    print(f"---- part {args.child} (pid {os.getpid()}), {args.deadline - time.time():.0f} s left", flush=True)
    try:
        plant = dict(item.split(":") for item in args.plant.split(",") if ":" in item)
        if plant.get(args.child) == "error":       # the tests' broken part
            raise RuntimeError("planted error")
        if plant.get(args.child) == "hang":        # the tests' part that never ends
            rep.set(partial="reported before the hang")
            time.sleep(3600)
        if args.tiny or args.device == "cpu":
            import torch
            torch.set_num_threads(min(2, torch.get_num_threads()))
        PART_FUNCS[args.child](args, rep)
        if rep.data["status"] == "running":
            rep.status("ok")
        return 0
    except BaseException as err:  # noqa: BLE001 -- reported, then the process ends
        rep.data.update(status="error", error=one_line(err), traceback=traceback.format_exc())
        rep.flush()
        traceback.print_exc()
        return 1


def main(argv=None) -> int:
    args = parse(argv)
    if args.child:
        return child(args)
    return Check(args).run()


if __name__ == "__main__":
    sys.exit(main())
