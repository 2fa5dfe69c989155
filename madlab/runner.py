"""Run one `RunConfig`: build target, backend and A(.), drive `Loop`, return tidy rows."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
import torch

from analysis.distances import NEEDS_REAL_SAMPLE, ot_solver, per_seed
from analysis.metrics import TAIL_METRICS
from analysis.tails import tail_metrics
from loops import Loop, SeedStreams, make_algorithm
from madlab.backends import BACKENDS
from madlab.config import ConfigError, RunConfig
from madlab.samples import choose, sample_file, sample_saver
from toy import fused
from toy.targets import make_target

if TYPE_CHECKING:
    from madlab.store import TaskCheckpoint

# progress(seeds_done_in_chunk_generations, total) is called after every generation of every chunk
Progress = Callable[[int, int], None]


def build_backend(cfg: RunConfig, event_shape: tuple[int, ...]):
    """The backend of `cfg` for data of one point's shape `event_shape` (its record's builder,
    madlab.backends)."""
    return BACKENDS[cfg.backend].build(cfg, event_shape)


def build_target(cfg: RunConfig):
    """p_r: the toy target --target names, or the backend's own (the edm backend's images)."""
    own = BACKENDS[cfg.backend].target
    return make_target(cfg.target) if own is None else own(cfg)


def build_loop(cfg: RunConfig) -> Loop:
    target = build_target(cfg)
    loop = cfg.loop
    return Loop(kind=loop.kind, algorithm=make_algorithm(cfg.algo, loop),
                backend=build_backend(cfg, target.event_shape), target=target, n_real=loop.n_real,
                n_synth=loop.n_synth, generations=loop.gens, n_eval=cfg.evaluation.n_eval)


def ot_jobs() -> int:
    """Threads for exact OT per seed: env MADLAB_OT_JOBS, else torch's thread count (one in a
    sweep task, all cores for `madlab run` on a many-core host; docs/performance.md)."""
    value = os.environ.get("MADLAB_OT_JOBS", "").strip()
    if not value:
        return max(1, torch.get_num_threads())
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"MADLAB_OT_JOBS must be a positive integer, got {value!r}")
    return int(value)


def check_environment() -> None:
    """The environment variables madlab reads, checked before any work starts (one-line error)."""
    ot_jobs()
    try:
        ot_solver()
        fused.mode()
    except ValueError as err:
        raise ConfigError(str(err)) from None


def make_evaluate(cfg: RunConfig, target, streams: SeedStreams):
    """dist(G^t, p_r) for each recorded metric (cfg.recorded_metrics()); w1/w2 against a fresh
    real sample of n_eval; fid against the data set's cached reference statistics
    (madlab.edm.evaluate); the tail diagnostics (outlier_share, m_inlier) from the same samples,
    m_inlier reusing m where a seed has no outlier (analysis.tails.tail_metrics); with
    --save-samples each generation's samples are kept first (madlab.samples)."""
    fid, names, n_eval = None, cfg.recorded_metrics(), cfg.evaluation.n_eval
    metrics = [m for m in names if m not in TAIL_METRICS]
    if "fid" in metrics:
        from madlab.edm.evaluate import FidMetric
        from madlab.edm.features import make_features
        fid = FidMetric(target.data, make_features(cfg.edm.fid_features, target.data,
                                                   weights=cfg.edm.fid_weights or None, device=cfg.device))

    save = sample_saver(cfg, streams.seeds)   # --save-samples: this chunk's samples, per generation

    def evaluate(samples: torch.Tensor, generation: int) -> dict[str, torch.Tensor]:
        if save is not None:
            save(samples, generation)
        real = None
        if any(NEEDS_REAL_SAMPLE.get(m, False) for m in names):
            real = target.sample(n_eval, streams.keys("eval-real", generation))
        # exact OT: on the samples' device, or per seed on the host in ot_jobs() threads
        values = {m: fid(samples) if m == "fid" else per_seed(m, samples, real, target,
                                                              n_jobs=ot_jobs())
                  for m in metrics}
        values |= tail_metrics(names, samples, real, target, plain=values, n_jobs=ot_jobs())
        return {m: values[m] for m in names}

    return evaluate


def config_columns(cfg: RunConfig) -> dict:
    """The run's options that change numbers, by flat name (the active backend's only): one
    column each, beside every row."""
    cols = cfg.identity()
    for key in ("seeds", "first_seed"):
        cols.pop(key)
    cols["metric_set"] = ",".join(cols.pop("metric"))
    return cols


def generation_rows(rec, chunk: list[int], run_id: str, columns: dict) -> pd.DataFrame:
    """One generation's rows: one per (seed, metric), with the configuration's columns."""
    rows = []
    for metric, values in rec.metrics.items():
        for seed, value in zip(chunk, values.tolist()):
            rows.append({"run": run_id, "seed": seed, "generation": rec.generation,
                         "metric": metric, "value": value, "train_size": rec.train_size,
                         "ensemble": len(chunk),
                         **{f"time_{k}_s": v for k, v in rec.seconds.items()}})
    frame = pd.DataFrame(rows)
    # the configuration's columns in one block (inserting ~40 columns one by one costs more than
    # the generation's evaluation on small runs)
    config = pd.DataFrame({key: [value] * len(frame) for key, value in columns.items()}, index=frame.index)
    return pd.concat([frame, config], axis=1)


def run_config(cfg: RunConfig, progress: Progress | None = None,
               checkpoint: "TaskCheckpoint | None" = None) -> pd.DataFrame:
    """Run every seed of `cfg` (in chunks of cfg.seed_chunk) and return one row per
    (seed, generation, metric).

    With a `checkpoint` (madlab.store.TaskCheckpoint; `cfg` is then one chunk, a sweep task),
    every finished generation's rows and loop state are committed there before `progress` hears
    of it, and a run finds the newest committed generation there and continues after it: the
    rows come out exactly as if it had never stopped. `progress` is called only for generations
    computed here, with the seed-generations done so far (resumed ones included)."""
    cfg.validate()
    loop = build_loop(cfg)
    seeds = cfg.seed_list()
    run_id, columns = cfg.run_id(), config_columns(cfg)
    chunks = [seeds[s:s + cfg.seed_chunk] for s in range(0, len(seeds), cfg.seed_chunk)]
    if checkpoint is not None and len(chunks) != 1:
        raise ValueError("a checkpointed run is one chunk of seeds (a sweep task)")
    frames, done, total = [], 0, len(seeds) * cfg.loop.gens
    started = time.perf_counter()
    for chunk in chunks:
        streams = SeedStreams(chunk, device=cfg.device)  # draws happen where the models live
        found = checkpoint.load(cfg.device) if checkpoint is not None else None
        resume = None
        if found is not None:
            resume, rows = found
            frames.append(rows)
            done += len(chunk) * resume.generation
        for rec in loop.run(streams, make_evaluate(cfg, loop.target, streams), resume=resume):
            frame = generation_rows(rec, chunk, run_id, columns)
            if checkpoint is not None:
                checkpoint.save(rec.state, frame)
            frames.append(frame)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs["seconds"] = time.perf_counter() - started
    return frame


def regenerate_samples(directory: Path, seed: int, generation: int, run: str | None = None
                       ) -> tuple[np.ndarray, str, dict]:
    """Recompute `seed`'s evaluation samples at `generation` in the run or sweep `directory`
    (`madlab samples --regenerate`): its configuration, that seed alone, generations
    1..`generation`, equal to the run's bit for bit on the same machine (madlab.samples)."""
    run_id, options, _ = choose(directory, seed, run)
    if not 1 <= generation <= options["gens"]:
        raise ConfigError(f"generation must lie in 1..{options['gens']}, got {generation}")
    cfg = RunConfig.from_flat({**options, "seeds": 1, "first_seed": seed, "gens": generation,
                               "save_samples": True, "samples_dir": "", "seed_chunk": 1})
    with tempfile.TemporaryDirectory(prefix="madlab-samples-") as tmp:
        cfg.evaluation.samples_dir = tmp
        run_config(cfg.validate())
        with np.load(sample_file(tmp, cfg, [seed], generation)) as data:
            return data["samples"][0], run_id, options
