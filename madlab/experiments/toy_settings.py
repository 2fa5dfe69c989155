"""The toy experiments' settings (madlab.experiments.settings): the toy DDPM ones (paper Figures
3, 6, 7) and the Gaussian-fit ones (the MAD loops, SIMS and the accumulate family against theory).
Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from analysis.metrics import METRICS
from loops.config import LOOP_KINDS
from loops.options import option, positive, require
from madlab.experiments.settings import Experiment


@dataclass
class ToyDDPMExperiment(Experiment):
    """The toy DDPM experiments: its learner, batch size and lr follow the run's defaults; those
    that name a metric measure w1, w2 or fd (the first one decides "best")."""

    USES: ClassVar = (*Experiment.USES, "n_real", "epochs", "learner", "batch_size", "lr", "n_eval")
    DEFAULTS: ClassVar = {"seeds": 4, "n_real": 1000, "epochs": 100}
    CHOICES: ClassVar = {"metric": METRICS}
    NOTES: ClassVar = {"metric": "Here: w1, w2 or fd; the first decides the best w."}

    def check(self) -> None:
        from madlab.experiments.common import check_learner

        check_learner(self.toy_ddpm.learner)
        self.toy_ddpm.validate()     # the learner's knobs resolved, as a run's are
        self.evaluation.validate()
        if "metric" in self.USES:
            self.require_metric(METRICS)


@dataclass
class Landscape(ToyDDPMExperiment):
    """Paper Fig. 3: dist(G_theta, p_r) over the plane of theta_r, theta_a and theta_s."""

    NAME: ClassVar = "landscape"
    USES: ClassVar = (*ToyDDPMExperiment.USES, "n_aux", "metric")
    NOTES: ClassVar = {"metric": "Here: w1, w2 or fd; the first is the heat map's."}
    DEFAULTS: ClassVar = {**ToyDDPMExperiment.DEFAULTS, "n_aux": 100_000, "n_eval": 1000, "metric": ["w2", "fd"]}
    SCALES: ClassVar = {
        "smoke": dict(seeds=2, epochs=20, n_aux=2000, n_advanced=2000, finetune_epochs=2, n_eval=500,
                      omega_a=[-1.0, 0.0, 1.0], omega_s=[-1.0, 0.0, 1.0, 2.0]),
        "quick": dict(seeds=8),
        "paper": dict(seeds=32, omega_a=[x / 4 for x in range(-10, 5)], omega_s=[x / 4 for x in range(-4, 17)]),
    }

    n_advanced: int = option(100_000, help="|D_a|: fresh real points the advanced model is fine-tuned on.")
    finetune_epochs: float = option(1.0, help="Fine-tuning budget: epochs over S (and over D_a).")
    finetune_lr: float = option(1e-4, help="Fine-tuning learning rate (small: stay in theta_r's basin).")
    omega_a: list[float] = option(default_factory=lambda: [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0], help=(
        "w_a grid (towards the advanced model; -1 is theta_a itself)."))
    omega_s: list[float] = option(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0],
                                  help="w_s grid (away from the auxiliary model: SIMS).")

    def check(self) -> None:
        super().check()
        positive(self, "n_advanced", "finetune_epochs", "finetune_lr")
        require(0.0 in self.omega_a and 0.0 in self.omega_s, "both grids must contain 0 (the base model)")
        require(-1.0 in self.omega_a, "omega_a must contain -1 (the advanced model itself)")


@dataclass
class Pollution(ToyDDPMExperiment):
    """Paper Fig. 6: ST-I, SIMS-I, ST-P and SIMS-P against the pollution |D_p|."""

    NAME: ClassVar = "pollution"
    USES: ClassVar = (*ToyDDPMExperiment.USES, "n_aux", "metric")
    DEFAULTS: ClassVar = {**ToyDDPMExperiment.DEFAULTS, "n_aux": 2000, "n_eval": 1000, "metric": ["fd", "w2"]}
    SCALES: ClassVar = {
        "smoke": dict(seeds=2, epochs=20, n_pollute=[500, 2000], n_aux=500, budgets=[10.0], omegas=[1.0, 3.0],
                      n_eval=500),
        "quick": dict(seeds=16),
        "paper": dict(seeds=32, n_pollute=[125, 250, 500, 750, 1000, 1500, 2000, 3000],
                      budgets=[12.5, 25.0, 50.0, 100.0], omegas=[0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]),
    }

    n_pollute: list[int] = option(default_factory=lambda: [250, 500, 1000, 2000], help=(
        "|D_p| values: the ST-I samples added to D_r."))
    budgets: list[float] = option(default_factory=lambda: [25.0, 50.0], help=(
        "SIMS budgets B: epochs of fine-tuning on S."))
    omegas: list[float] = option(default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0], help=(
        "SIMS guidance weights w (the best per |D_p| is reported, by the first metric)."))

    def check(self) -> None:
        super().check()
        require(bool(self.n_pollute) and all(n > 0 for n in self.n_pollute),
                f"n_pollute must be positive sizes, got {self.n_pollute}")
        require(bool(self.budgets) and all(b > 0 for b in self.budgets),
                f"budgets must be positive, got {self.budgets}")
        require(bool(self.omegas), "give at least one omega")


@dataclass
class Shift(ToyDDPMExperiment):
    """Paper Fig. 7: SIMS shifts a two-mode mixture's proportions."""

    NAME: ClassVar = "shift"
    USES: ClassVar = (*ToyDDPMExperiment.USES, "aux_epochs")
    DEFAULTS: ClassVar = {**ToyDDPMExperiment.DEFAULTS, "aux_epochs": 50, "n_eval": 2000}
    SCALES: ClassVar = {
        "smoke": dict(seeds=2, epochs=20, n_curated=500, aux_epochs=10, n_eval=1000, n_ot=300,
                      omegas=[-1.0, 0.0, 1.0, 2.0]),
        "quick": dict(seeds=8),
        "paper": dict(seeds=16, n_curated=2000, aux_epochs=50, n_eval=10_000, n_ot=2000),
    }

    n_curated: int = option(2000, help="|S|: the curated synthetic set (the paper: 140k = 2 x |FFHQ|).")
    curated_shares: list[float] = option(default_factory=lambda: [0.7, 0.3], help=(
        "The two modes' shares in S; SIMS aims at the complement."))
    omegas: list[float] = option(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0], help=(
        "Guidance weights w (-1: the auxiliary model, 0: the base model)."))
    n_ot: int = option(1000, help="Of the n-eval samples per w, the first n-ot measure W2 to p_hat (exact OT).")

    def check(self) -> None:
        super().check()
        positive(self, "n_curated", "n_ot")
        shares = self.curated_shares
        require(len(shares) == 2 and all(0 < p < 1 for p in shares) and abs(sum(shares) - 1) < 1e-9,
                f"curated_shares must be two shares in (0, 1) that sum to 1, got {shares}")
        require(-1.0 in self.omegas and 0.0 in self.omegas,
                "omegas must include -1 (the auxiliary model) and 0 (the base model)")
        require(self.n_ot <= self.evaluation.n_eval, "n_ot cannot exceed n_eval")

    def target_shares(self) -> list[float]:
        """p_hat: the complement of the curated proportions (2 modes: swap them)."""
        return list(reversed(self.curated_shares))


# ---------------------------------------------------------------------- the Gaussian-fit experiments
@dataclass
class GaussianFitExperiment(Experiment):
    USES: ClassVar = (*Experiment.USES, "gens", "n_real")

    def check(self) -> None:
        require(self.seeds >= 2, "give at least 2 seeds (expectations need a spread)")
        require(bool(self.biases) and all(0 < b <= 1 for b in self.biases),
                f"biases must be in (0, 1], got {self.biases}")


@dataclass
class MadLoops(GaussianFitExperiment):
    """Alemohammad et al. 2023: the three MAD loops with the Gaussian fit."""

    NAME: ClassVar = "mad-loops"
    USES: ClassVar = (*GaussianFitExperiment.USES, "n_synth")
    DEFAULTS: ClassVar = {"seeds": 2000, "gens": 100, "n_real": 100, "n_synth": 100}
    SCALES: ClassVar = {
        "smoke": dict(seeds=300, gens=30, tail=15, initial_sizes=[10, 1000]),
        "quick": dict(seeds=2000),
        "paper": dict(seeds=20000, gens=200, tail=100),
    }

    biases: list[float] = option(default_factory=lambda: [1.0, 0.95, 0.9], help="Sampling biases lambda.")
    initial_sizes: list[int] = option(default_factory=lambda: [10, 100, 1000], help="Fresh loop: |D_r^1| values.")
    tail: int = option(50, help="Stationary limits average generations T - tail + 1 .. T.")

    def check(self) -> None:
        super().check()
        positive(self, "tail")
        require(self.loop.n_real >= 2 and self.loop.n_synth >= 2, "a Gaussian fit needs at least 2 points per set")
        require(self.tail <= self.loop.gens, f"tail ({self.tail}) cannot exceed gens ({self.loop.gens})")
        require(1.0 in self.biases, "biases must include 1.0 (the unbiased reference)")
        require(bool(self.initial_sizes) and all(n >= 2 for n in self.initial_sizes),
                f"initial sizes must be >= 2, got {self.initial_sizes}")


@dataclass
class SimsTheory(GaussianFitExperiment):
    """SIMS on the Gaussian fit against its exact expectations."""

    NAME: ClassVar = "sims-theory"
    USES: ClassVar = (*GaussianFitExperiment.USES, "n_synth", "n_aux")
    DEFAULTS: ClassVar = {"seeds": 2000, "gens": 30, "n_real": 100, "n_synth": 100, "n_aux": 200}
    SCALES: ClassVar = {
        "smoke": dict(seeds=300, gens=8, map_seeds=200, map_omegas=[1.0, 4.0], map_sizes=[25, 200]),
        "quick": {},
        "paper": dict(seeds=20000, gens=100, map_seeds=5000),
    }

    omegas: list[float] = option(default_factory=lambda: [1.0], help="Guidance weights w checked beside w* (and 0).")
    biases: list[float] = option(default_factory=lambda: [1.0, 0.9], help="Sampling biases lambda.")
    loops: list[str] = option(default_factory=lambda: ["fully-synthetic", "augment", "accumulate"],
                              choices=LOOP_KINDS, help="Loop kinds simulated.")
    map_seeds: int = option(1000, help="Seeds per cell of the (w, |D_s|) map.")
    map_omegas: list[float] = option(default_factory=lambda: [0.5, 1.0, 2.0, 4.0, 8.0], help="The map's w values.")
    map_sizes: list[int] = option(default_factory=lambda: [25, 50, 100, 200, 400], help="The map's |D_s| values.")
    tolerance: float = option(0.05, help='The map\'s "prevented": |E tr S_T / tr Sigma - 1| <= tolerance.')

    def check(self) -> None:
        super().check()
        positive(self, "map_seeds", "tolerance")
        require(self.map_seeds >= 2, "give at least 2 seeds (expectations need a spread)")
        require(min(self.loop.n_real, self.loop.n_synth, self.algo.n_aux) > 4,
                "the inverse-Wishart means need n_real, n_synth and n_aux above d + 2 = 4")
        require(all(w > 0 for w in self.omegas + self.map_omegas), "omegas must be positive (0 is standard training)")
        require(all(n > 4 for n in self.map_sizes), "map sizes must be above 4")
        require(bool(self.loops), "give at least one loop")


@dataclass
class Accumulate(GaussianFitExperiment):
    """accumulate and accumulate-subsample with the Gaussian fit against theory."""

    NAME: ClassVar = "accumulate"
    DEFAULTS: ClassVar = {"seeds": 2000, "gens": 50, "n_real": 100}
    SCALES: ClassVar = {"smoke": dict(seeds=300, gens=10), "quick": {}, "paper": dict(seeds=20000, gens=200)}

    n_synth: list[int] = option(default_factory=lambda: [100, 25], help=(
        "|D_s| values, one loop each (the bound needs |D_s| = |D_r|)."))
    biases: list[float] = option(default_factory=lambda: [1.0, 0.9], help="Sampling biases lambda.")

    def check(self) -> None:
        super().check()
        require(self.loop.n_real >= 2 and bool(self.n_synth) and all(m >= 2 for m in self.n_synth),
                "a Gaussian fit needs at least 2 points per set")
