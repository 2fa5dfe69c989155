"""What the image experiments share (paper Figures 4, 6, 7 and an image MAD loop; `digits` or a .npz).

Settings compose the EDM backend's own `EDMConfig` (override any of it with `--set edm.FIELD=VALUE`),
the data set is read from disk (madlab.edm.data), FID is measured per seed against the whole data
set's statistics with two feature sets side by side (`fid`: --set edm.fid_features, auto = the
digits classifier or Inception; `fid_pixels`: raw pixels), and class shares come from a classifier
trained on the data set's labels (the digits classifier of madlab.edm.features).

Resumable: every trained ensemble and every seed's rows are written to the work folder
(OUT/work, `settings.workdir`) as they finish; a rerun with the same settings loads them and
redoes only what is missing. A work folder of other settings is refused (one line), never mixed.
Each seed runs alone with its own streams (SeedStreams([seed])): its numbers do not depend on the
seeds beside it or on how the seeds were split over processes.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from loops import SeedStreams
from madlab.config import ConfigError
from madlab.experiments.common import Progress
from madlab.experiments.image_settings import ImageExperiment

N_BOOT = 2000                           # bootstrap resamplings of the seeds for the 95 % bands


class Bench:
    """The data set, the backend, the FID metrics, the classifier and the work folder of one experiment."""

    def __init__(self, s: ImageExperiment, name: str):
        from madlab.edm.backend import EDMBackend
        from madlab.edm.data import ImageTarget, load_images_cached
        from madlab.edm.evaluate import FidMetric
        from madlab.edm.features import PixelFeatures, make_features

        cfg = s.edm_config()
        self.settings = s
        self.images = load_images_cached(cfg.dataset)
        self.target = ImageTarget(self.images)
        self.backend = EDMBackend(cfg, self.target.event_shape)
        extractors = {"fid": lambda: make_features(cfg.fid_features, self.images,
                                                   weights=cfg.fid_weights or None, device=s.device),
                      "fid_pixels": PixelFeatures}
        self.extractors = {m: extractors[m]() for m in s.evaluation.metric}
        self.fids = {m: FidMetric(self.images, self.extractors[m]) for m in s.evaluation.metric}
        self._classifier = None
        self.work = Path(s.workdir).expanduser() / name if s.workdir else None
        if self.work is not None:
            claim(self.work, s.identity())

    # ------------------------------------------------------------------ measuring
    def fid(self, x: torch.Tensor) -> dict[str, list[float]]:
        """{metric: [FID per seed]} of samples [N, n, C, H, W] against the whole data set."""
        return {m: f(x).tolist() for m, f in self.fids.items()}

    def fid_to(self, x: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        """{metric: FID} of one seed's samples [n, C, H, W] against the real images [M, C, H, W]."""
        from analysis.fid import feature_stats, fid_from_features
        from madlab.edm.data import to_uint8, to_unit

        x = to_unit(to_uint8(x))
        return {m: fid_from_features(e(x), feature_stats(e(real))) for m, e in self.extractors.items()}

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class labels [...] of images [..., C, H, W] in [-1, 1] by the data set's classifier."""
        if self._classifier is None:
            from madlab.edm.data import to_unit
            from madlab.edm.features import ClassifierFeatures

            if self.images.labels is None:
                raise ConfigError(f"data set {self.images.name!r} has no labels: class shares need them")
            self._classifier = ClassifierFeatures(to_unit(self.images.images), self.images.labels, self.images.key)
        from madlab.edm.data import to_uint8, to_unit

        flat = to_unit(to_uint8(x.detach().cpu())).reshape(-1, *x.shape[-3:])
        with torch.no_grad():
            labels = self._classifier.model(flat.flatten(1)).argmax(-1)
        return labels.reshape(x.shape[:-3])

    # ------------------------------------------------------------------ the work folder
    def model(self, name: str, build: Callable[[], object]):
        """Ensemble `name`: loaded from the work folder if an earlier run saved it, else built and saved."""
        if self.work is None:
            return build()
        path = self.work / "models" / f"{name}.pt"
        if path.is_file():
            return self.backend.load(path)
        model = build()
        self.backend.save(model, path)
        return model

    def rows(self, name: str, build: Callable[[], list[dict]]) -> list[dict]:
        """Rows `name`: read back from the work folder if an earlier run wrote them, else built and written."""
        if self.work is None:
            return build()
        path = self.work / "rows" / f"{name}.csv"
        if path.is_file():
            return pd.read_csv(path, keep_default_na=False, na_values=[""]).to_dict("records")
        rows = build()
        write_atomic(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
        return rows


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def claim(work: Path, identity: dict) -> None:
    """Mark `work` as this configuration's; ConfigError if it holds another configuration's results.
    A folder is this configuration's when its settings-id.json has this digest or records the same
    settings (JSON numbers compared by value: an earlier version wrote `epochs: 60` for 60.0)."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    path = work / "settings-id.json"
    if path.is_file():
        held = json.loads(path.read_text())
        if held.get("id") != digest and held.get("settings") != json.loads(blob):
            raise ConfigError(f"{work} holds results of other settings (id {held.get('id')}, these are "
                              f"{digest}); use another --out or delete that folder")
        return
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps({"id": digest, "settings": identity},
                                                             indent=2, default=str) + "\n"))


def per_seed(s: ImageExperiment, bench: Bench, units: int, progress: Progress,
             one_seed: Callable[[int, SeedStreams, Callable[[str], None]], list[dict]]) -> pd.DataFrame:
    """Rows of every seed (row r of every seed, then row r + 1, as madlab.experiments.chunks
    interleaves; seeds may have different numbers of rows): one_seed(seed, streams, step) returns one seed's rows and calls step(message)
    before each of its `units` units of work; finished seeds are read back from the work folder."""
    seeds = list(range(s.first_seed, s.first_seed + s.seeds))
    done = [0]
    total = units * len(seeds)
    per: list[list[dict]] = []
    for seed in seeds:
        def step(message: str, seed=seed) -> None:
            progress(done[0], total, f"seed {seed}: {message}")
            done[0] += 1

        start = done[0]
        per.append(bench.rows(f"seed{seed}", lambda seed=seed: one_seed(seed, SeedStreams([seed]), step)))
        done[0] = start + units
    progress(total, total, "done")
    from madlab.experiments.chunks import interleave   # row r of every seed, then r + 1: as chunks join

    return interleave([pd.DataFrame(rows) for rows in per if rows])


def band(values, n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean over seeds and its 95 % percentile-bootstrap band (seeds resampled)."""
    from analysis.mad import bootstrap_means

    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    boots = bootstrap_means(v, n_boot)[:, 0]
    return float(v.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def ratio_band(num, den, n_boot: int = N_BOOT) -> tuple[float, float, float]:
    """(mean(num)/mean(den), lo, hi): a ratio of means over the same seeds, bootstrapped jointly."""
    from analysis.mad import bootstrap_means

    v = np.stack([np.asarray(num, np.float64), np.asarray(den, np.float64)], axis=1)
    boots = bootstrap_means(v, n_boot)
    r = boots[:, 0] / boots[:, 1]
    return float(v[:, 0].mean() / v[:, 1].mean()), float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))


def summarise_bands(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and bootstrap band over seeds of `value` for each group of `by` (seeds in rows)."""
    out = []
    for key, part in table.groupby(by, sort=False):
        mean, lo, hi = band(part["value"].to_numpy())
        out.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))), "mean": mean,
                    "lo": lo, "hi": hi, "seeds": part["seed"].nunique()})
    return pd.DataFrame(out)


def fid_notes(s: ImageExperiment) -> list[str]:
    """The lines every image table carries about its FID."""
    named = {"fid": f"'fid' uses {s.edm_config().fid_features} features", "fid_pixels": "'fid_pixels' raw pixels"}
    return [f"FID per seed against the whole data set's statistics, on {s.evaluation.n_eval} samples; "
            f"{', '.join(named[m] for m in s.evaluation.metric)}. Mean over {s.seeds} seeds with a 95 % "
            "percentile-bootstrap band over seeds.",
            "Judge differences against the FID floor and its bias (table fid-floor below, "
            "`madlab experiment images-fid`): real images score above 0 at this sample size."]


# ---------------------------------------------------------------------- cost
# CPU throughput of the EDM backend on `digits` (8x8, batch 64, one torch thread, process time),
# measured on the project's 2-core AMD EPYC box, madlab 493cc31 (train 4 epochs on 512 images, sample
# 500 images at 10 Heun steps, under nice while other work loaded the box): images trained per CPU-second, and image-network-evaluations
# per CPU-second while sampling (the sampler makes 2 * num_steps - 1 per image, twice that guided).
CPU_RATES = {"tiny": (847.0, 558.0 * 19), "small": (337.0, 64.6 * 19)}


def trained(s: ImageExperiment, budget: float, n: int) -> int:
    """Images one training call of `budget` on n images sees (EDMBackend.train: whole batches)."""
    import math

    batch = min(s.edm.batch_size, n)
    images = max(1, round(budget * 1000)) if s.edm.budget == "kimg" else max(1, round(budget * n))
    return math.ceil(images / batch) * batch


def estimate(s: ImageExperiment, train_images: int, sample_images: int) -> dict:
    """The workload of all seeds (images trained; images sampled, a guided one counting twice) and,
    where CPU_RATES has the network, the CPU-seconds it predicts on that box (None otherwise)."""
    nfe = 2 * s.edm.num_steps - 1
    out = {"images trained": train_images * s.seeds, "images sampled (guided count twice)": sample_images * s.seeds,
           "network evaluations while sampling": sample_images * s.seeds * nfe}
    rates = CPU_RATES.get(s.edm.net) if s.device == "cpu" else None
    out["estimated CPU-seconds (measured rates)"] = (
        None if rates is None else round(s.seeds * (train_images / rates[0] + sample_images * nfe / rates[1])))
    return out
