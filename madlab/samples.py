"""Saved evaluation samples: one seed-generation's model samples, to look at (`madlab samples`).

With `--save-samples`, every generation's evaluation samples (the n_eval points each seed's
dist(G^t, p_r) was measured on) are written per seed chunk and generation:

    SAMPLES_DIR/<configuration key>/seeds-<first>-<last>/gen-<t, 4 digits>.npz
        samples   float32 [seeds in the chunk, n_eval, d]
        seeds     int64 [seeds in the chunk]
        generation

SAMPLES_DIR is the `samples_dir` option: `madlab run` and `madlab sweep` set it to OUT/samples,
recorded relative to OUT (`samples`) so that a copied or moved run folder keeps its samples;
a task resolves it against the directory it runs for (`resolve`), so any worker that can write
the results can write the samples. A --samples-dir outside OUT is recorded absolute. The
configuration key hashes the options that change the numbers except the seeds (`config_key`), so
every seed chunk of one configuration finds the same folder. A run without saved samples can
regenerate one seed's samples: `madlab.runner.regenerate_samples` reruns that seed alone up to the
generation (seed k's numbers do not depend on the seeds beside it; alone they agree bit for bit on
the same machine and build, as tests/test_reproducibility.py and tests/test_samples.py check).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from madlab.backends import BACKENDS
from madlab.config import ConfigError, RunConfig

SAMPLES = "samples"       # OUT/samples


def config_key(cfg: RunConfig) -> str:
    """The configuration's folder name: a hash of what changes the numbers, seeds left out."""
    identity = {k: v for k, v in cfg.identity().items() if k not in ("seeds", "first_seed")}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]


def sample_file(samples_dir, cfg: RunConfig, seeds, generation: int) -> Path:
    """Where `cfg`'s samples of the seed chunk `seeds` at `generation` go."""
    return (Path(samples_dir) / config_key(cfg) / f"seeds-{seeds[0]}-{seeds[-1]}"
            / f"gen-{int(generation):04d}.npz")


def recorded(samples_dir: str, out: Path) -> str:
    """How a samples folder is recorded in a run folder: relative to `out` when it lies inside
    (the default OUT/samples is `samples`), else absolute."""
    folder = Path(samples_dir or Path(out) / SAMPLES).resolve()
    try:
        return str(folder.relative_to(Path(out).resolve()))
    except ValueError:
        return str(folder)


def resolve(samples_dir: str, out: Path | None) -> str:
    """A recorded samples folder as a path to write or read: relative ones lie in `out`."""
    if not samples_dir or Path(samples_dir).is_absolute() or out is None:
        return samples_dir
    return str(Path(out).resolve() / samples_dir)


def configure(cfg: RunConfig, out: Path) -> None:
    """With --save-samples: samples_dir = OUT/samples unless given, recorded relative to OUT."""
    ev = cfg.evaluation
    if ev.save_samples:
        ev.samples_dir = recorded(ev.samples_dir, out)


def configure_tasks(tasks, out: Path) -> None:
    """`configure` for sweep tasks (their configs are flat dicts)."""
    for task in tasks:
        if task.config.get("save_samples"):
            task.config["samples_dir"] = recorded(task.config.get("samples_dir") or "", out)


def sample_saver(cfg: RunConfig, seeds) -> Callable | None:
    """save(samples [N, n, d], generation) for this seed chunk, or None without --save-samples."""
    ev = cfg.evaluation
    if not ev.save_samples:
        return None
    if not ev.samples_dir:
        raise ConfigError("--save-samples needs a folder: set samples_dir (madlab run and madlab "
                          "sweep set OUT/samples)")
    seeds = np.asarray(list(seeds), dtype=np.int64)

    def save(samples, generation: int) -> None:
        from madlab.store import atomic_path

        x = samples.detach().to("cpu").float().numpy()
        with atomic_path(sample_file(ev.samples_dir, cfg, seeds, generation)) as tmp, open(tmp, "wb") as f:
            np.savez(f, samples=x, seeds=seeds, generation=np.int64(generation))

    return save


# ---------------------------------------------------------------------------------------------
# finding them again

def configurations(directory: Path) -> list[tuple[str, dict, list[dict]]]:
    """(run id, its options, its task configs) of every configuration of a run or sweep directory."""
    from madlab.store import CONFIG, MANIFEST

    directory = Path(directory)
    manifest = directory / MANIFEST
    if manifest.exists():
        tasks = json.loads(manifest.read_text())["tasks"]
        runs: dict[str, list[dict]] = {}
        for t in tasks:
            runs.setdefault(t["run"], []).append(t["config"])
        return [(run, configs[0], configs) for run, configs in runs.items()]
    if (directory / CONFIG).exists():
        cfg = RunConfig.from_dict(json.loads((directory / CONFIG).read_text())["config"])
        return [(cfg.run_id(), cfg.flat(), [cfg.flat()])]
    raise ConfigError(f"{directory} is no madlab run or sweep directory (no sweep.json or config.json)")


def choose(directory: Path, seed: int, run: str | None) -> tuple[str, dict, dict]:
    """The configuration (run id, options, the task config holding `seed`) of `directory`."""
    found = []
    for run_id, options, configs in configurations(directory):
        if run is not None and run_id != run:
            continue
        for c in configs:
            if c["first_seed"] <= seed < c["first_seed"] + c["seeds"]:
                found.append((run_id, options, c))
    if not found:
        runs = ", ".join(r for r, _, _ in configurations(directory))
        if run is not None and run not in runs.split(", "):
            raise ConfigError(f"{directory} holds no run {run!r}; it holds {runs}")
        raise ConfigError(f"{directory} ran no seed {seed}" + (f" in run {run}" if run else ""))
    if len(found) > 1:
        raise ConfigError(f"{directory} holds {len(found)} configurations with seed {seed}; pick one "
                          f"with --run ({', '.join(r for r, _, _ in found)})")
    return found[0]


def load(directory: Path, seed: int, generation: int, run: str | None = None
         ) -> tuple[np.ndarray, str, dict]:
    """(samples [n_eval, d] of `seed` at `generation`, run id, the run's options); ConfigError
    (one line) when they were not saved."""
    run_id, options, config = choose(directory, seed, run)
    if not 1 <= generation <= options["gens"]:
        raise ConfigError(f"generation must lie in 1..{options['gens']}, got {generation}")
    backend = BACKENDS.get(options.get("backend"))
    if backend is not None and not backend.toy:
        raise ConfigError("madlab samples draws vector samples: toy backends only")
    samples_dir = config.get("samples_dir") or ""
    if not config.get("save_samples") or not samples_dir:
        raise ConfigError(f"{directory} holds no saved samples (run {run_id} ran without "
                          "--save-samples); rerun with --save-samples into a new --out, or add "
                          "--regenerate to recompute this seed alone")
    seeds = list(range(config["first_seed"], config["first_seed"] + config["seeds"]))
    path = sample_file(resolve(samples_dir, directory), RunConfig.from_flat(config), seeds, generation)
    if not path.exists():
        raise ConfigError(f"no saved samples for seed {seed} at generation {generation} ({path} is "
                          "missing: has that generation run yet?); add --regenerate to recompute them")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = np.flatnonzero(np.asarray(data["seeds"]) == seed)
            samples = np.asarray(data["samples"])
            if len(found) != 1 or samples.ndim != 3 or samples.shape[0] != len(data["seeds"]):
                raise ValueError(f"it holds seeds {np.asarray(data['seeds']).ravel()[:8].tolist()} and samples "
                                 f"of shape {list(samples.shape)}, not seed {seed}'s")
            return samples[int(found[0])], run_id, options
    except Exception as err:  # noqa: BLE001 - torn, random bytes, another chunk's file
        text = " ".join(str(err).split()) or type(err).__name__
        raise ConfigError(f"{path} does not hold the saved samples of seed {seed} ({text}); add "
                          "--regenerate to recompute them") from None
