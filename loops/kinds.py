"""The four self-consuming loop kinds: how the training set D^t of generation t is formed.

G^1 = A(D_r) for every kind. For t >= 2 (paper section 2; accumulate from Gerstgrasser et al. 2024):
  fully-synthetic  D^t = D_s^{t-1}
  augment          D^t = D_r ∪ D_s^{t-1}             (one fixed real set)
  fresh            D^t = D_r^t ∪ D_s^{t-1}           (a new real draw every generation)
  accumulate       D^t = D_r ∪ D_s^1 ∪ ... ∪ D_s^{t-1}
"""
from __future__ import annotations

import torch

from loops.config import LOOP_KINDS


def training_set(kind: str, generation: int, real: torch.Tensor,
                 synthetic: list[torch.Tensor]) -> torch.Tensor:
    """D^t for `generation` t (1-based).

    real: [N, n_r, ...] the real set of this generation (D_r, or D_r^t for `fresh`).
    synthetic: D_s^1 ... D_s^{t-1}, each [N, n_s, ...], oldest first.
    """
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown loop kind {kind!r}; choose one of {', '.join(LOOP_KINDS)}")
    if generation == 1:
        return real
    if len(synthetic) < generation - 1 and kind == "accumulate":
        raise ValueError("accumulate needs every earlier synthetic set")
    if not synthetic:
        raise ValueError(f"generation {generation} needs the previous synthetic set")
    if kind == "fully-synthetic":
        return synthetic[-1]
    if kind in ("augment", "fresh"):
        return torch.cat([real, synthetic[-1]], dim=1)
    return torch.cat([real, *synthetic], dim=1)


def keeps_all_synthetic(kind: str) -> bool:
    """Whether the loop must keep every D_s^t (accumulate) or only the last one."""
    return kind == "accumulate"


def draws_fresh_real(kind: str) -> bool:
    """Whether the loop draws a new real set every generation."""
    return kind == "fresh"
