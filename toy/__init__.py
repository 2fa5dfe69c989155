"""The toy world: target distributions, the vectorized toy DDPM, the closed-form Gaussian fit.

The names below are imported on first use (PEP 562), so `toy.config` loads without torch.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "DDPMConfig": "toy.config", "GaussianFitConfig": "toy.config", "ToyDDPM": "toy.ddpm",
    "GaussianFit": "toy.gaussian_fit", "TARGETS": "toy.targets", "Gaussian": "toy.targets",
    "GaussianMixture": "toy.targets", "make_target": "toy.targets",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'toy' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
