"""What each experiment takes (`madlab experiment NAME`): the run options it uses, and its own.

An experiment's settings are a run's config (`madlab.config.RunConfig`: the same loop, algo,
toy_ddpm, edm and evaluation components, seeds, first_seed and device, each option declared once
in its component) plus the few options only that experiment has, declared here with `option()`:

    @dataclass
    class Landscape(ToyDDPMExperiment):
        USES = (*ToyDDPMExperiment.USES, "n_aux", "metric")    # the run options it reads
        DEFAULTS = {**ToyDDPMExperiment.DEFAULTS, "n_aux": 100_000, ...}   # its values of them
        SCALES = {"smoke": {...}, "quick": {"seeds": 8}, "paper": {...}}
        n_advanced: int = option(100_000, help="|D_a|: ...")   # its own options

`Landscape.at("smoke", ["n_aux=500"])` is the smoke scale with one setting changed. A setting is
named as `madlab run` and sweep files name options: by flat name (`n_aux`, `edm_lr`) or dotted
path (`algo.n_aux`, `edm.lr`); `--set KEY=VALUE`, the generated `--n-aux` flags and settings.json
use these names, and the names earlier versions used still work (ALIASES). The run options keep
the run's help, types and range checks; `validate()` adds what the experiment needs.
Torch-free, so `madlab experiment NAME --help` starts fast.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import sys
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from analysis.metrics import METRICS
from loops.config import LOOP_KINDS
from loops.options import (ConfigError, Spec, as_tree, check_value, coerce, get_path, lookup, non_negative,
                           option, own_specs, parse, positive, require, set_path)
from madlab.config import OPTIONS, RunConfig, check_device

SCALES = ("smoke", "quick", "paper")
ALIASES = {"metrics": "metric"}      # setting names of earlier versions -> today's
RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))


@dataclass
class Experiment(RunConfig):
    """The settings of one experiment: the run options named in USES (a flat name, or a component
    such as "edm" for all its options) at the experiment's DEFAULTS and then its scale's values,
    and the options declared in the subclass. Build them with `at()` (a bare `Landscape()` holds
    the run's defaults, not the experiment's)."""

    NAME: ClassVar[str] = ""
    USES: ClassVar[tuple[str, ...]] = ("seeds", "first_seed", "device")
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    SCALES: ClassVar[dict[str, dict[str, Any]]] = {}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}   # a run option's choices narrowed here
    NOTES: ClassVar[dict[str, str]] = {}                 # what a run option means here, after its help

    # ------------------------------------------------------------------ building
    @classmethod
    def at(cls, scale: str = "quick", assignments: Iterable[str] = ()) -> "Experiment":
        """The settings at `scale` (smoke | quick | paper), then KEY=VALUE `assignments`."""
        require(scale in SCALES, f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        return cls().apply({**cls.DEFAULTS, **cls.SCALES.get(scale, {})}).assign(assignments)

    def apply(self, values: Mapping[str, Any]) -> "Experiment":
        """A copy with typed values set, by setting name."""
        out = copy.deepcopy(self)
        for key, value in values.items():
            spec = out.find(key)
            set_path(out, spec.path, coerce(spec, value))
        return out

    def assign(self, assignments: Iterable[str]) -> "Experiment":
        """A copy with KEY=VALUE assignments applied, VALUE typed by the setting (lists comma-separated)."""
        out = copy.deepcopy(self)
        for item in assignments:
            key, sep, raw = str(item).partition("=")
            require(bool(sep), f"--set expects KEY=VALUE, got {item!r}")
            spec = out.find(key)
            set_path(out, spec.path, parse(spec, raw))
        return out

    @classmethod
    def find(cls, key: str) -> Spec:
        """The setting named `key` (flat name or dotted path; an earlier name with a note on stderr)."""
        name = str(key).strip().replace("-", "_")
        if name in ALIASES:
            print(f"madlab: note: setting {name!r} is now {ALIASES[name]!r}", file=sys.stderr)
            name = ALIASES[name]
        return lookup(name, [*cls.settings(), *hidden(cls)], what="setting",
                      listed=f"madlab experiment {cls.NAME} --help")

    # ------------------------------------------------------------------ views
    @classmethod
    def settings(cls) -> list[Spec]:
        """Every setting the --help lists: the experiment's own options, then the run options it uses."""
        return listed(cls)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its path, nested as the tree (settings.json; the run's config.json shape)."""
        return as_tree(self, [*self.settings(), *hidden(type(self))])

    # ------------------------------------------------------------------ checking
    def validate(self) -> "Experiment":
        """Types and choices of every setting, the run's range checks, then the experiment's own
        (`check`); ConfigError (one line) for bad input."""
        for spec in self.settings():
            value = get_path(self, spec.path)
            if value is not None or spec.default is not None:   # None: the component resolves it (lr)
                set_path(self, spec.path, check_value(spec, value))
        positive(self, "seeds")
        non_negative(self, "first_seed")
        self.loop.validate()
        self.algo.validate()
        check_device(self.device)
        self.check()
        return self

    def check(self) -> None:
        """The experiment's own conditions (ConfigError otherwise)."""

    def require_metric(self, allowed: tuple[str, ...]) -> None:
        """At least one metric, each in `allowed`, on at least 2 samples (FD and FID need a covariance)."""
        metric, n_eval = self.evaluation.metric, self.evaluation.n_eval
        require(bool(metric) and all(m in allowed for m in metric),
                f"metric must be among {', '.join(allowed)}, got {metric}")
        require(n_eval >= 2, f"n-eval must be at least 2, got {n_eval}")


@functools.cache
def listed(cls: type) -> list[Spec]:
    """The settings of experiment `cls` (Experiment.settings): its own under its name in --help."""
    own = [dataclasses.replace(spec, panel=cls.NAME) for f, spec in own_specs(cls) if f.name not in RUN_FIELDS]
    used = [dataclasses.replace(spec, choices=cls.CHOICES.get(spec.flat, spec.choices),
                                help=" ".join(filter(None, (spec.help, cls.NOTES.get(spec.flat)))))
            for spec in OPTIONS if spec.flat in cls.USES or spec.path[0] in cls.USES]
    return own + used


@functools.cache
def hidden(cls: type) -> list[Spec]:
    """The plain fields of the components in USES (edm.sample_batch, edm.quantize...): internal
    knobs that --set has always reached, listed nowhere else (device comes from the run's)."""
    out = []
    for name in cls.USES:
        part = {f.name: f for f in dataclasses.fields(RunConfig)}.get(name)
        if part is None or not part.metadata.get("nested"):
            continue
        component = typing.get_type_hints(RunConfig)[name]
        hints = typing.get_type_hints(component)
        for f in dataclasses.fields(component):
            if "help" not in f.metadata and f.name != "device" and hints[f.name] in (int, float, str, bool):
                out.append(Spec(flat=f"{name}.{f.name}", path=(name, f.name), kind=hints[f.name],
                                default=f.default, help="", choices=(), panel="", negative=None,
                                identity=True, branch=None))
    return out


# ---------------------------------------------------------------------- the toy DDPM experiments
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


# ---------------------------------------------------------------------- the image experiments
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
