"""The loop's and the training algorithm's options (torch-free: the CLI reads them at start-up)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from loops.options import check, option, positive

LOOP_KINDS = ("fully-synthetic", "augment", "fresh", "accumulate", "accumulate-subsample")
ALGORITHMS = ("standard", "sims", "sims-param")


@dataclass
class LoopConfig:
    """How each generation's training set is formed, and how long each generation trains."""

    PANEL: ClassVar[str] = "Loop"

    kind: str = option("augment", flat="loop", choices=LOOP_KINDS, help=(
        "Loop kind: D^t = D_s^{t-1} (fully-synthetic), D_r ∪ D_s^{t-1} (augment), D_r^t ∪ "
        "D_s^{t-1} (fresh), D_r ∪ D_s^1..D_s^{t-1} (accumulate), |D_r| points drawn without "
        "replacement from D_r ∪ D_s^1..D_s^{t-1} (accumulate-subsample)."))
    gens: int = option(100, help="Generations of the loop (T).")
    n_real: int = option(1000, help="|D_r|, real points per seed.")
    n_synth: int = option(250, help="|D_s|, synthetic points each generation hands on.")
    epochs: float = option(100.0, help="Epochs of training per generation.")
    warm_start: bool = option(False, negative="from-scratch", help=(
        "Start generation t from G^{t-1}'s weights, or from a fresh initialisation."))

    def validate(self) -> "LoopConfig":
        check(self)
        positive(self, "gens", "n_real", "n_synth", "epochs")
        return self


@dataclass
class AlgoConfig:
    """The training algorithm A(.) and SIMS's options (ignored by `standard`)."""

    PANEL: ClassVar[str] = "SIMS"

    name: str = option("sims", flat="algo", choices=ALGORITHMS, help=(
        "Training algorithm A(.): standard (Alg. 2), sims (Alg. 1, score-space guidance, Eq. 5), "
        "sims-param (parameter space, Eq. 6)."))
    omega: float = option(3.0, help=(
        "SIMS guidance weight w: s = (1+w) s_base - w s_aux. 0 is standard training, -1 samples "
        "the auxiliary model."))
    n_aux: int = option(2000, help="SIMS n_s: self-samples the auxiliary model is fine-tuned on.")
    aux_epochs: float = option(50.0, help=(
        "SIMS budget B: epochs of fine-tuning the auxiliary model on its n_s samples."))

    def validate(self) -> "AlgoConfig":
        check(self)
        positive(self, "n_aux", "aux_epochs")
        return self

