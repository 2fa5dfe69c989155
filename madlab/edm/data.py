"""Image data sets from local files only (nothing is ever downloaded) and the image Target p_r.

`digits`  scikit-learn's bundled 8×8 handwritten digits (1797 images, 17 grey levels, labelled).
PATH.npz  uint8 images, [M, H, W], [M, H, W, C] or [M, C, H, W], under key `x`, `images` or the
          first array; optional labels under `y` or `labels`.
PATH/     a folder of image files (png, jpg, bmp, ...), read with Pillow, all of one size.
Images become float tensors in [-1, 1], [C, H, W].
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from loops.rng import StreamKeys

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class ImageSet:
    """All images of a data set as uint8 [M, C, H, W], optional labels [M], and a cache key."""

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    key: str     # identifies the contents, for caching reference statistics


def to_unit(images) -> torch.Tensor:
    """uint8 [..., C, H, W] -> float32 in [-1, 1]."""
    return torch.as_tensor(np.asarray(images)).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 (clipped, rounded): how a sample is stored as an image."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _content_key(name: str, images: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:16]
    return f"{name}-{images.shape[1]}x{images.shape[2]}x{images.shape[3]}-{digest}"


def _nchw(x: np.ndarray, source: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise ValueError(f"{source}: images must be uint8, got {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3, 4):
        raise ValueError(f"{source}: expected [M, H, W(, C)] or [M, C, H, W] images, got shape {x.shape}")
    return np.ascontiguousarray(x[:, :3])


def load_digits_set() -> ImageSet:
    try:
        from sklearn.datasets import load_digits  # bundled with scikit-learn: no download
    except ImportError:
        raise ValueError("the digits data set comes with scikit-learn: pip install 'madlab[images]'") from None

    d = load_digits()
    images = np.rint(d.images * (255 / 16)).astype(np.uint8)[:, None]
    return ImageSet("digits", images, d.target.astype(np.int64), _content_key("digits", images))


def load_npz(path: Path) -> ImageSet:
    with np.load(path) as z:
        keys = list(z.keys())
        key = next((k for k in ("x", "images") if k in keys), keys[0] if keys else None)
        if key is None:
            raise ValueError(f"{path}: no arrays in the file")
        images = _nchw(z[key], str(path))
        label_key = next((k for k in ("y", "labels") if k in keys), None)
        labels = z[label_key].astype(np.int64).reshape(-1) if label_key else None
    if labels is not None and len(labels) != len(images):
        labels = None
    return ImageSet(path.stem, images, labels, _content_key(path.stem, images))


def load_folder(path: Path) -> ImageSet:
    try:
        from PIL import Image
    except ImportError:
        raise ValueError("reading a folder of images needs Pillow: pip install 'madlab[images]'") from None

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    arrays = []
    for f in files:
        with Image.open(f) as im:
            grey = im.mode in ("1", "L", "I", "I;16")
            arrays.append(np.asarray(im.convert("L" if grey else "RGB")))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{path}: images differ in size ({len(shapes)} shapes); resize them first")
    images = _nchw(np.stack(arrays), str(path))
    return ImageSet(path.name, images, None, _content_key(path.name, images))


def load_images(dataset: str) -> ImageSet:
    """`digits`, a `.npz` file or a folder of images."""
    if dataset == "digits":
        return load_digits_set()
    path = Path(dataset).expanduser()
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path)
    if path.is_dir():
        return load_folder(path)
    raise ValueError(f"dataset {dataset!r} is neither 'digits', an existing .npz file nor a folder of images")


@functools.lru_cache(maxsize=4)
def load_images_cached(dataset: str) -> ImageSet:
    """`load_images`, remembered for the process (validation and the run load it once)."""
    return load_images(dataset)


class ImageTarget:
    """p_r = the empirical distribution of a local image set (Target protocol).

    Seed k draws its real set from stream keys[k]: n distinct images (a random subset: the first n
    of the stable argsort of M uniforms) when n <= M, otherwise with replacement. Images stay on the
    CPU, where the EDM backend keeps its data.
    """

    def __init__(self, images: ImageSet):
        self.data = images
        self.name = images.name
        self.event_shape = tuple(images.images.shape[1:])
        self._unit = to_unit(images.images)

    def sample(self, n: int, keys: StreamKeys) -> torch.Tensor:
        M = len(self._unit)
        if n <= M:
            idx = torch.argsort(keys.rand((M,), dtype=torch.float64), dim=-1, stable=True)[:, :n]
        else:
            idx = (keys.rand((n,), dtype=torch.float64) * M).long().clamp(max=M - 1)
        return self._unit[idx.cpu()]
