"""FID per seed: features of each seed's samples against the data set's cached reference statistics."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from analysis.fid import feature_stats, fid_from_features
from madlab.edm.data import ImageSet, to_unit, to_uint8
from madlab.edm.features import FeatureExtractor, cache_dir


class FidMetric:
    """dist(G^t, p_r) = FID between a seed's samples and the whole data set (reference statistics)."""

    def __init__(self, images: ImageSet, extractor: FeatureExtractor, cache: Path | None = None):
        self.images = images          # the real data set: its statistics are the reference
        self.extractor = extractor    # images -> features
        self.path = (cache or cache_dir()) / "fid" / f"{images.key}-{extractor.name}.npz"
        self._reference: tuple[np.ndarray, np.ndarray] | None = None

    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        """(mu, Sigma) of the features of every real image, computed once and cached on disk."""
        if self._reference is None:
            if self.path.is_file():
                with np.load(self.path) as z:
                    self._reference = (z["mu"], z["sigma"])
            else:
                feats = np.concatenate([self.extractor(to_unit(self.images.images[s:s + 1000]))
                                        for s in range(0, len(self.images.images), 1000)])
                self._reference = feature_stats(feats)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_name(f"{self.path.stem}.tmp{os.getpid()}.npz")
                np.savez(tmp, mu=self._reference[0], sigma=self._reference[1])
                os.replace(tmp, self.path)
        return self._reference

    def __call__(self, samples: torch.Tensor) -> torch.Tensor:
        """samples [N, n, C, H, W] in [-1, 1] -> FID [N] (samples quantised to 8 bits first, as stored images)."""
        ref = self.reference()
        values = [fid_from_features(self.extractor(to_unit(to_uint8(s.detach().cpu()))), ref) for s in samples]
        return torch.tensor(values, dtype=torch.float64)
