"""The backends (`--backend`), one record each: its options, how to build it, what it measures,
its cost model and what else it needs of a run.

    --backend  options (RunConfig field: class)       p_r                 builds
    toy-ddpm   toy_ddpm: toy.config.DDPMConfig         a toy target        toy.ddpm.ToyDDPM (toy.reference
                                                                           for learners it lacks)
    gaussian   gaussian: toy.config.GaussianFitConfig  a toy target        toy.gaussian_fit.GaussianFit
    edm        edm: madlab.edm.config.EDMConfig        images (--dataset)  madlab.edm.backend.EDMBackend
    kde        kde: toy.config.KDEConfig               a toy target        toy.kde.KDE

madlab.config nests each record's options in RunConfig (dotted paths `toy_ddpm.width`, active only
under their --backend) and runs its checks; madlab.runner builds it and its p_r; madlab.plan
estimates a configuration's cost from its `work`. A new backend is one more record in `BACKENDS`
(its code implements loops.protocol.Backend).

Torch-free (the CLI reads the names and options at start-up): building imports the backend's code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from analysis.metrics import IMAGE_METRICS, VECTOR_METRICS
from loops.options import require
from madlab.edm.config import EDMConfig
from toy.config import DDPMConfig, GaussianFitConfig, KDEConfig

OT_UNITS = 2000         # toy-ddpm work units per point pair of exact OT (w1/w2), against its row units

# a backend's cost model: (flat options, mean |D^t| over the generations, point pairs of exact OT
# per generation) -> work units of one seed-generation. Units compare within one backend only:
# madlab.plan measures seconds per unit per backend.
Work = Callable[[Mapping[str, Any], float, int], float]


@dataclass(frozen=True)
class BackendSpec:
    """One model family as madlab runs it."""

    name: str                     # --backend NAME
    options: str                  # RunConfig's field holding its options
    config: type                  # their dataclass (its PANEL is their --help group)
    help: str                     # its words in --backend's help
    # (validated RunConfig, one point's shape) -> its loops.protocol.Backend
    build: Callable[[Any, tuple[int, ...]], Any]
    work: Work                    # cost model, for madlab.plan
    metrics: tuple[str, ...]      # what --metric accepts; the first is the default
    # its p_r from the RunConfig (None: the toy target --target names)
    target: Callable[[Any], Any] | None = None
    # what else it needs of a RunConfig (ConfigError), after the common checks
    check: Callable[[Any], None] | None = None

    @property
    def toy(self) -> bool:
        """Whether p_r is a toy target (--target): vector samples, tail diagnostics, --save-samples."""
        return self.target is None


def uses_aux(o: Mapping[str, Any]) -> bool:
    """Whether the algorithm trains and samples the SIMS auxiliary model."""
    return o["algo"] != "standard"


def guided(o: Mapping[str, Any]) -> int:
    """Models evaluated per sampling step: two under SIMS guidance, else one."""
    return 2 if uses_aux(o) and o["omega"] != 0 else 1


# ------------------------------------------------------------------------------------ toy-ddpm
def build_toy_ddpm(cfg, event_shape: tuple[int, ...]):
    from toy.learners import LEARNERS
    from toy.standardize import Standardized

    ddpm = cfg.ddpm()
    if LEARNERS[ddpm.learner].fast:
        from toy.ddpm import ToyDDPM
        backend = ToyDDPM(ddpm, dim=event_shape[0])
    else:                                        # toy-diffusion: the autograd reference
        from toy.reference import ReferenceDDPM, reference_config
        backend = ReferenceDDPM(reference_config(ddpm), dim=event_shape[0])
    return Standardized(backend) if ddpm.standardize else backend


def toy_ddpm_work(o: Mapping[str, Any], data: float, pairs: int) -> float:
    """Multiply-adds per row x rows through the network (training, 3 passes; sampling, T steps)."""
    sims = uses_aux(o)
    row = o["width"] ** 2 * 2 * max(o["depth"], 1) + 4 * o["width"]        # multiply-adds per row
    train = 3 * (o["epochs"] * data + (o["aux_epochs"] * o["n_aux"] if sims else 0))
    sample = o["T"] * ((o["n_aux"] if sims else 0) + guided(o) * (o["n_synth"] + o["n_eval"]))
    return row * (train + sample) + OT_UNITS * pairs


# ------------------------------------------------------------------------------------ gaussian, kde
def build_gaussian(cfg, event_shape: tuple[int, ...]):
    from toy.gaussian_fit import GaussianFit

    fit = cfg.gaussian
    return GaussianFit(estimator=fit.estimator, bias=fit.sampling_bias, device=cfg.device)


def build_kde(cfg, event_shape: tuple[int, ...]):
    from toy.kde import KDE

    return KDE(bandwidth=cfg.kde.bandwidth, h=cfg.kde.kde_h, device=cfg.device)


def points_work(o: Mapping[str, Any], data: float, pairs: int) -> float:
    """Points handled: fitted, sampled and measured (closed-form fits)."""
    return data + o["n_synth"] + (o["n_aux"] if uses_aux(o) else 0) + o["n_eval"] + pairs


def check_gaussian(cfg) -> None:
    # a covariance needs two points: D^1 = D_r, and SIMS's S
    require(cfg.loop.n_real >= 2, f"--backend gaussian fits a covariance: n-real must be at "
                                  f"least 2, got {cfg.loop.n_real}")
    require(cfg.algo.name == "standard" or cfg.algo.n_aux >= 2,
            f"--backend gaussian fits a covariance: n-aux must be at least 2, got {cfg.algo.n_aux}")


def check_kde(cfg) -> None:
    require(cfg.algo.name == "standard",
            f"--backend kde supports --algo standard only, not {cfg.algo.name}: a KDE's parameters "
            "are its data points, which the auxiliary fit does not share (no Eq. 6), and the guided "
            "density of two KDEs has no exact sampler (no Eq. 5)")
    if cfg.kde.bandwidth != "fixed":
        require(min(cfg.loop.n_real, cfg.loop.n_synth) >= 2, "--backend kde with a bandwidth rule "
                "needs a covariance: n-real and n-synth must be at least 2")


# ------------------------------------------------------------------------------------ edm
def build_edm(cfg, event_shape: tuple[int, ...]):
    from madlab.edm.backend import EDMBackend

    return EDMBackend(cfg.backend_config(), event_shape)


def image_target(cfg):
    from madlab.edm.data import ImageTarget, load_images_cached

    return ImageTarget(load_images_cached(cfg.edm.dataset))


def edm_work(o: Mapping[str, Any], data: float, pairs: int) -> float:
    """Images through the U-Net: training (3 passes) and sampling (2 per Heun step)."""
    sims, kimg = uses_aux(o), o.get("edm_budget") == "kimg"
    images = o["epochs"] * 1000 if kimg else o["epochs"] * data
    aux = (o["aux_epochs"] * (1000 if kimg else o["n_aux"])) if sims else 0
    sample = 2 * o["edm_steps"] * ((o["n_aux"] if sims else 0) + guided(o) * (o["n_synth"] + o["n_eval"]))
    return 3 * (images + aux) + sample + pairs


def check_edm(cfg) -> None:
    cfg.edm.check_data(cfg.evaluation.metric)     # loads the data set: after the cheap checks


# ------------------------------------------------------------------------------------ the registry
BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in [
    BackendSpec("toy-ddpm", "toy_ddpm", DDPMConfig, "vectorized DDPM", build_toy_ddpm, toy_ddpm_work,
                VECTOR_METRICS),
    BackendSpec("gaussian", "gaussian", GaussianFitConfig, "closed-form fit, classic MAD analytics",
                build_gaussian, points_work, VECTOR_METRICS, check=check_gaussian),
    BackendSpec("edm", "edm", EDMConfig, "image diffusion, Karras et al. 2022, on --dataset", build_edm,
                edm_work, IMAGE_METRICS, target=image_target, check=check_edm),
    BackendSpec("kde", "kde", KDEConfig, "Gaussian kernel density estimator; --algo standard only",
                build_kde, points_work, VECTOR_METRICS, check=check_kde),
]}
TOY_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.toy)


def backend_help() -> str:
    """`--backend`'s help: every backend's words."""
    parts = [f"{name} ({spec.help})" for name, spec in BACKENDS.items()]
    return f"Model family: {', '.join(parts[:-1])} or {parts[-1]}."
