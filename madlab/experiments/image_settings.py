"""The image experiments' settings (madlab.experiments.settings): paper Figures 4, 6, 7 and an
image MAD loop with the EDM backend, and the FID floor. Torch-free."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from loops.options import ConfigError, get_path, option, positive, require
from madlab.config import RunConfig
from madlab.experiments.settings import ALIASES, Experiment


CIFAR = {"edm.dataset": "~/data/cifar10-train.npz", "edm.net": "ddpmpp-cifar10", "edm.budget": "kimg",
         "edm.batch_size": 512, "edm.lr": 1e-3, "edm.ema_kimg": 500, "edm.num_steps": 18,
         "edm.fid_features": "inception"}   # the GPU scale: EDM's CIFAR-10 DDPM++, budgets in kimg
IMAGE_METRICS = ("fid", "fid_pixels")      # FID on the configured features | FID on raw pixels


@dataclass
class ImageExperiment(Experiment):
    """The image experiments: the EDM backend's whole config (`--set edm.FIELD=VALUE`), on digits
    with the `small` U-Net, 10 Heun steps and an EMA half-life of 0.5 kimg by default."""

    USES: ClassVar = (*Experiment.USES, "n_real", "epochs", "n_eval", "metric", "edm")
    DEFAULTS: ClassVar = {"seeds": 3, "n_real": 1000, "epochs": 60, "n_eval": 500, "metric": list(IMAGE_METRICS),
                          "edm.net": "small", "edm.num_steps": 10, "edm.ema_kimg": 0.5}
    CHOICES: ClassVar = {"metric": IMAGE_METRICS}
    NOTES: ClassVar = {"metric": "Here: fid (on --fid-features) and fid_pixels (on raw pixels), measured side "
                                 "by side; the first decides the best w."}

    workdir: str = option("", identity=False, help=(
        "Resumable work folder [default: OUT/work, set by madlab experiment]."))

    def check(self) -> None:
        self.require_metric(IMAGE_METRICS)      # the first one decides "best"
        try:
            self.edm_config().check_data(["fid"])
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def edm_config(self):
        """The backend's config with the experiment's device (validated: features resolved)."""
        try:
            return dataclasses.replace(self.edm, device=self.device).validate()
        except ValueError as err:
            raise ConfigError(f"edm: {err}") from None

    def identity(self) -> dict:
        """What changes the numbers: every setting but the seeds, device and work folder, keyed
        as the work folder's settings-id.json has always keyed them (`metrics`; `edm` as its
        dataclass), so that a work folder of an earlier version resumes (images.claim)."""
        legacy = {new: old for old, new in ALIASES.items()}
        out = {legacy.get(s.flat, s.path[-1]): get_path(self, s.path) for s in self.settings()
               if s.path[0] != "edm" and s.flat not in ("seeds", "first_seed", "device", "workdir")}
        out["edm"] = {k: v for k, v in dataclasses.asdict(self.edm).items()
                      if k not in ("device", "checkpoint_dir", "sample_batch")}
        return out


@dataclass
class FineTuningImageExperiment(ImageExperiment):
    """Image experiments that fine-tune auxiliary models on n_aux base samples for each budget B."""

    USES: ClassVar = (*ImageExperiment.USES, "n_aux")
    DEFAULTS: ClassVar = {**ImageExperiment.DEFAULTS, "n_aux": 1000}

    budgets: list[float] = option(default_factory=lambda: [5.0], help="B: epochs over S (or kimg).")

    def check(self) -> None:
        super().check()
        require(bool(self.budgets) and all(b > 0 for b in self.budgets),
                f"budgets must be positive, got {self.budgets}")


@dataclass
class ImagesSelfImprove(FineTuningImageExperiment):
    """Paper Fig. 4 on real images: FID against w and the budget B."""

    NAME: ClassVar = "images-self-improve"
    DEFAULTS: ClassVar = {**FineTuningImageExperiment.DEFAULTS, "budgets": [2.0, 5.0, 10.0]}
    SCALES: ClassVar = {
        "smoke": dict(seeds=3, n_real=300, epochs=3, n_aux=100, budgets=[1.0, 2.0, 4.0], n_eval=100,
                      omegas=[-1.0, 0.0, 1.0, 2.0], omegas_vs_budget=[1.0, 2.0]),
        "quick": {},
        "paper": dict(CIFAR, n_real=50_000, epochs=200_000, n_aux=50_000,
                      budgets=[10_000.0, 20_000.0, 40_000.0], n_eval=50_000, device="cuda"),
    }

    omegas: list[float] = option(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0], help=(
        "Guidance weights w (0: the base model)."))
    omegas_vs_budget: list[float] = option(default_factory=lambda: [0.5, 1.0, 2.0], help="The bottom row's w.")

    def check(self) -> None:
        super().check()
        require(0.0 in self.omegas and any(w > 0 for w in self.omegas),
                "omegas must include 0 (the base model) and some w > 0 (SIMS)")
        require(set(self.omegas_vs_budget) <= set(self.omegas), "omegas_vs_budget must be among omegas")


@dataclass
class ImagesPollution(FineTuningImageExperiment):
    """Paper Fig. 6 on real images: ST-I, SIMS-I, ST-P and SIMS-P against |D_p|."""

    NAME: ClassVar = "images-pollution"
    SCALES: ClassVar = {
        "smoke": dict(seeds=3, n_real=300, epochs=3, pollute_shares=[0.0, 0.5, 1.0], n_aux=100, budgets=[2.0],
                      omegas=[1.0, 2.0], n_eval=100),
        "quick": {},
        "paper": dict(CIFAR, n_real=50_000, epochs=200_000, pollute_shares=[0.0, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0],
                      n_aux=100_000, budgets=[10_000.0, 20_000.0, 40_000.0], omegas=[0.5, 1.0, 1.5, 2.0],
                      n_eval=50_000, device="cuda"),
    }

    pollute_shares: list[float] = option(default_factory=lambda: [0.0, 0.25, 0.5, 1.0], help="|D_p| / |D_r| values.")
    omegas: list[float] = option(default_factory=lambda: [0.5, 1.0, 2.0], help="SIMS's w grid (the best per |D_p|).")

    def check(self) -> None:
        super().check()
        require(bool(self.pollute_shares) and all(0 <= p for p in self.pollute_shares),
                f"pollute_shares must be >= 0, got {self.pollute_shares}")
        require(bool(self.omegas), "give at least one omega")

    def sizes(self) -> list[int]:
        """|D_p| of the grid, 0 first."""
        return sorted({0, *(round(p * self.loop.n_real) for p in self.pollute_shares)})


@dataclass
class ImagesShift(ImageExperiment):
    """Paper Fig. 7 on real images: class shares and per-group FID against w."""

    NAME: ClassVar = "images-shift"
    USES: ClassVar = (*ImageExperiment.USES, "aux_epochs")
    DEFAULTS: ClassVar = {**ImageExperiment.DEFAULTS, "aux_epochs": 5.0}
    SCALES: ClassVar = {
        "smoke": dict(seeds=3, n_real=300, epochs=3, n_curated=100, aux_epochs=2.0, n_eval=100,
                      omegas=[-1.0, 0.0, 1.0, 2.0]),
        "quick": {},
        "paper": dict(CIFAR, n_real=50_000, epochs=200_000, n_curated=100_000, aux_epochs=20_000.0, n_eval=20_000,
                      omegas=[-1.0, -0.5, 0.0, 0.5, 1.0, 1.25, 1.5, 2.0], device="cuda"),
    }

    group: list[int] = option(default_factory=lambda: [0, 1, 2, 3, 4], help="The classes of group A.")
    curated_share: float = option(0.7, help=(
        "Share of group A in S (the paper: 70 % male to reach 70 % female)."))
    n_curated: int = option(1000, help="|S|: the curated set.")
    omegas: list[float] = option(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0], help=(
        "Guidance weights w (-1: the auxiliary model, 0: the base model)."))

    def check(self) -> None:
        super().check()
        require(0 < self.curated_share < 1, f"curated_share must be in (0, 1), got {self.curated_share}")
        require(bool(self.group), "group must name at least one class")
        require(self.n_curated >= 2, "n_curated >= 2 needed")
        require(-1.0 in self.omegas and 0.0 in self.omegas,
                "omegas must include -1 (the auxiliary model) and 0 (the base model)")

    def counts(self) -> tuple[int, int]:
        """Images of group A and of group B in S."""
        a = round(self.curated_share * self.n_curated)
        return a, self.n_curated - a


@dataclass
class ImagesLoop(ImageExperiment):
    """Paper Fig. 5 bottom on images: the augment loop, standard vs SIMS, fully synthetic as MAD reference."""

    NAME: ClassVar = "images-loop"
    USES: ClassVar = (*ImageExperiment.USES, "gens", "n_synth", "n_aux", "aux_epochs")
    NOTES: ClassVar = {"metric": "Here: fid (on --fid-features) only, the one metric the loop records."}
    DEFAULTS: ClassVar = {**ImageExperiment.DEFAULTS, "gens": 10, "n_synth": 150, "n_aux": 300, "aux_epochs": 5.0,
                          "n_real": 300, "epochs": 30, "n_eval": 300, "metric": ["fid"]}
    SCALES: ClassVar = {
        "smoke": dict(seeds=3, gens=3, n_real=100, n_synth=50, epochs=3, n_aux=50, aux_epochs=1.0, n_eval=100,
                      omegas=[1.0]),
        "quick": {},
        "paper": dict(CIFAR, gens=10, n_real=50_000, n_synth=12_500, epochs=100_000, n_aux=50_000,
                      aux_epochs=20_000.0, n_eval=10_000, device="cuda"),
    }

    omegas: list[float] = option(default_factory=lambda: [1.0, 3.0], help=(
        "The SIMS arms' w (standard, w = 0, always runs)."))
    fully_synthetic: bool = option(True, help=(
        "Also run the fully synthetic loop (standard training): the MAD reference."))

    def check(self) -> None:
        super().check()
        require(self.evaluation.metric == ["fid"], "the loop records fid (the configured features) only: metric=fid")
        require(self.loop.gens >= 2, f"gens must be at least 2, got {self.loop.gens}")
        require(all(w != 0 for w in self.omegas), "omegas are the SIMS arms: w = 0 (standard) always runs")
        for arm, cfg in self.arms().items():
            try:
                cfg.validate()
            except ValueError as err:
                raise ConfigError(f"{arm}: {err}") from None

    def arms(self) -> dict:
        """{arm name: RunConfig of one seed} in the order they are run and plotted."""
        out = {"standard": self.run_config("augment", "standard", 0.0)}
        out |= {f"SIMS w={w:g}": self.run_config("augment", "sims", w) for w in self.omegas}
        if self.fully_synthetic:
            out["fully synthetic"] = self.run_config("fully-synthetic", "standard", 0.0)
        return out

    def run_config(self, kind: str, algo: str, omega: float, seed: int = 0) -> RunConfig:
        """One arm as a run: these settings' loop, algo, edm and evaluation, one seed."""
        loop = dataclasses.replace(self.loop, kind=kind)
        return RunConfig(loop=loop, algo=dataclasses.replace(self.algo, name=algo, omega=float(omega)),
                         seeds=1, first_seed=seed, backend="edm", device=self.device,
                         edm=dataclasses.replace(self.edm, checkpoint_dir=""),
                         evaluation=dataclasses.replace(self.evaluation, metric=["fid"]))


@dataclass
class ImagesFid(ImageExperiment):
    """The FID floor of the image experiments and its bias against n."""

    NAME: ClassVar = "images-fid"
    SCALES: ClassVar = {"smoke": dict(sizes=[100, 500], repeats=3), "quick": {},
                        "paper": dict(sizes=[1000, 5000, 10_000], repeats=5)}

    sizes: list[int] = option(default_factory=lambda: [100, 250, 500, 898], help="n: images per side.")
    repeats: int = option(10, help="Random splits per n (mean and sd over them).")

    def check(self) -> None:
        super().check()
        positive(self, "repeats")
        require(bool(self.sizes) and all(n >= 2 for n in self.sizes), f"sizes must be >= 2, got {self.sizes}")
