"""The self-consuming loop kinds: how the training set D^t of generation t is formed.

G^1 = A(D_r) for every kind. For t >= 2 (paper section 2; accumulate from Gerstgrasser et al. 2024,
accumulate-subsample from Kazdan et al. 2024, "Collapse or Thrive"):
  fully-synthetic       D^t = D_s^{t-1}
  augment               D^t = D_r ∪ D_s^{t-1}             (one fixed real set)
  fresh                 D^t = D_r^t ∪ D_s^{t-1}           (a new real draw every generation)
  accumulate            D^t = D_r ∪ D_s^1 ∪ ... ∪ D_s^{t-1}
  accumulate-subsample  D^t = |D_r| points drawn uniformly without replacement from
                              D_r ∪ D_s^1 ∪ ... ∪ D_s^{t-1}  (a fixed training-set size)
"""
from __future__ import annotations

import torch

from loops.config import LOOP_KINDS
from loops.rng import StreamKeys


def training_set(kind: str, generation: int, real: torch.Tensor,
                 synthetic: list[torch.Tensor], keys: StreamKeys | None = None) -> torch.Tensor:
    """D^t for `generation` t (1-based).

    real: [N, n_r, ...] the real set of this generation (D_r, or D_r^t for `fresh`).
    synthetic: D_s^1 ... D_s^{t-1}, each [N, n_s, ...], oldest first.
    keys: accumulate-subsample only, the streams that pick seed k's subset (row k from keys[k]).
    """
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown loop kind {kind!r}; choose one of {', '.join(LOOP_KINDS)}")
    if generation == 1:
        return real
    if len(synthetic) < generation - 1 and keeps_all_synthetic(kind):
        raise ValueError(f"{kind} needs every earlier synthetic set")
    if not synthetic:
        raise ValueError(f"generation {generation} needs the previous synthetic set")
    if kind == "fully-synthetic":
        return synthetic[-1]
    if kind in ("augment", "fresh"):
        return torch.cat([real, synthetic[-1]], dim=1)
    pool = torch.cat([real, *synthetic], dim=1)
    if kind == "accumulate":
        return pool
    if keys is None:
        raise ValueError("accumulate-subsample needs random streams to draw its subset")
    return subsample(pool, real.shape[1], keys)


def training_set_size(kind: str, generation: int, n_real: int, n_synth: int) -> int:
    """|D^t|: the points per seed that `training_set` returns for `generation` t (1-based), with
    |D_r| = n_real and |D_s| = n_synth (what madlab.plan's cost model counts)."""
    if kind not in LOOP_KINDS:
        raise ValueError(f"unknown loop kind {kind!r}; choose one of {', '.join(LOOP_KINDS)}")
    if generation == 1 or kind == "accumulate-subsample":
        return n_real
    if kind == "fully-synthetic":
        return n_synth
    if kind == "accumulate":
        return n_real + (generation - 1) * n_synth
    return n_real + n_synth                     # augment, fresh


def subsample(pool: torch.Tensor, n: int, keys: StreamKeys) -> torch.Tensor:
    """n of pool's points [N, M, ...] per seed, uniformly without replacement (a random
    permutation's first n from seed k's uniform stream), in the pool's order."""
    u = keys.rand(pool.shape[1], dtype=torch.float64, device=pool.device)     # [N, M]
    index = u.argsort(dim=1)[:, :n].sort(dim=1).values
    index = index.view(*index.shape, *([1] * (pool.dim() - 2))).expand(-1, -1, *pool.shape[2:])
    return pool.gather(1, index)


def keeps_all_synthetic(kind: str) -> bool:
    """Whether the loop must keep every D_s^t (the accumulate kinds) or only the last one."""
    return kind in ("accumulate", "accumulate-subsample")


def draws_fresh_real(kind: str) -> bool:
    """Whether the loop draws a new real set every generation."""
    return kind == "fresh"
