"""The self-consuming loop engine: loop kinds, training algorithms A(.), per-seed randomness.

Nothing here knows about any model family; backends implement `loops.protocol.Backend`.
"""
from loops.algorithms import ALGORITHMS, Sims, SimsParam, Standard, Trained, make_algorithm
from loops.kinds import LOOP_KINDS
from loops.loop import GenerationRecord, Loop
from loops.protocol import Backend, Target
from loops.rng import SeedStreams, StreamKeys

__all__ = [
    "ALGORITHMS", "LOOP_KINDS", "Backend", "GenerationRecord", "Loop", "SeedStreams", "Sims",
    "SimsParam", "Standard", "StreamKeys", "Target", "Trained", "make_algorithm",
]
