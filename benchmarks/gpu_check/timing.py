"""Timing shared by the GPU check's parts: device-synchronised call ledgers and phase clocks, the
default experiment, a timed run_config, and the tables made from a run's rows."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

from benchmarks.gpu_check.report import Report
from benchmarks.harness import sync


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
