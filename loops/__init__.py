"""The self-consuming loop engine: loop kinds, training algorithms A(.), per-seed randomness.

Nothing here knows about any model family; backends implement `loops.protocol.Backend`.
The names below are imported on first use (PEP 562), so `loops.config` loads without torch.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "ALGORITHMS": "loops.config", "LOOP_KINDS": "loops.config", "AlgoConfig": "loops.config",
    "LoopConfig": "loops.config", "Sims": "loops.algorithms", "SimsParam": "loops.algorithms",
    "Standard": "loops.algorithms", "Trained": "loops.algorithms",
    "make_algorithm": "loops.algorithms", "GenerationRecord": "loops.loop", "Loop": "loops.loop",
    "LoopState": "loops.loop",
    "Backend": "loops.protocol", "Target": "loops.protocol", "SeedStreams": "loops.rng",
    "StreamKeys": "loops.rng",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'loops' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
