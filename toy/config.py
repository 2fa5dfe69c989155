"""Options of the toy world: the targets' names, the toy DDPM's and the Gaussian fit's options.

Torch-free (the CLI reads it at start-up); the code they configure is in `toy.targets`,
`toy.ddpm` and `toy.gaussian_fit`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from loops.options import check, label, non_negative, option, positive, require

TARGET_NAMES = ("gaussian2d", "mixture2d")     # toy.targets.TARGETS builds them
SCHEDULES = ("cosine", "linear")               # toy.schedules.alpha_bar
TIME_EMBEDDINGS = ("scaled", "raw", "sinusoidal")
ACTIVATION_NAMES = ("relu", "silu", "gelu", "tanh")   # toy.ddpm.ACTIVATIONS
VARIANCES = ("beta", "posterior")
LR_SCHEDULES = ("linear", "constant")
KERNEL_MODES = ("auto", "fused", "torch", "compile")  # toy.fused: $MADLAB_KERNELS; compile: toy.compiled
FINETUNE_STARTS = ("restart", "continue")      # how the SIMS auxiliary fine-tune starts

# The named learners and the knobs each presets (a knob left at None takes its learner's value;
# docs/calibration.md, "Learner screen"). toy.reference.LEARNERS holds the same learners as
# reference configs (tests/test_reference.py checks that the two agree).
DEFAULT_LEARNER = "resmlp-silu"
LEARNERS = {
    # the tail screen's winner (docs/calibration.md, "Tail screen at a million samples"):
    # resmlp-sin with SiLU, whose far-field eps is nearer the exact one; at generation 1 its
    # share of samples beyond radius 5 is p_r's own, also under SIMS guidance at omega = 3
    "resmlp-silu": dict(T=40, depth=2, time_embedding="sinusoidal", layer_norm=False,
                        activation="silu", lr=3e-3, lr_schedule="linear"),
    # the first screen's winner (the default before the tail screen): residual ReLU MLP
    # without LayerNorm, sinusoidal time input
    "resmlp-sin": dict(T=40, depth=2, time_embedding="sinusoidal", layer_norm=False,
                       activation="relu", lr=3e-3, lr_schedule="linear"),
    # madlab 0.1's learner: residual MLP with LayerNorm, time input t / T
    "resmlp-ln": dict(T=40, depth=2, time_embedding="scaled", layer_norm=True, activation="relu",
                      lr=3e-3, lr_schedule="linear"),
    # the SIMS paper's cited learner (albarji/toy-diffusion), a plain 4 x 64 ReLU MLP on [x, t];
    # run by toy.reference.ReferenceDDPM (its network, schedule and data order are not the fast
    # path's)
    "toy-diffusion": dict(T=39, depth=4, time_embedding="raw", layer_norm=False,
                          activation="relu", lr=1e-3, lr_schedule="constant"),
}
REFERENCE_LEARNERS = ("toy-diffusion",)        # learners that madlab.runner runs on toy.reference
# The share of the reverse chain (its low-noise end, t <= share * T) on which SIMS guides by
# default, chosen at generation 1. resmlp-silu: the last quarter, the widest of the intervals
# screened (t <= T, T/2, T/4) whose guided tail at omega = 3 stays within 2x of p_r's own
# (docs/calibration.md, "Tail screen at a million samples": 1 and 3 of 1.024 M samples beyond
# radius 5 on two seed sets, against 15 and 20 on t <= T/2); its W2 and fd are the better too.
# resmlp-sin: the late half ("SIMS knobs": omega = 3 gives W2 0.33 against 0.46 on the whole
# chain). The paper's appendix A finds the early, high-noise steps the least needed. The other
# learners keep the whole chain (madlab 0.1's behaviour; the paper's default interval).
GUIDED_SHARE = {"resmlp-silu": 0.25, "resmlp-sin": 0.5, "resmlp-ln": 1.0, "toy-diffusion": 1.0}


def learner_default(name: str, learner: str = DEFAULT_LEARNER):
    """Knob `name`'s value under `learner` (e.g. the default learner's lr, for the experiments)."""
    return LEARNERS[learner][name]
ESTIMATORS = ("mle", "unbiased")               # toy.gaussian_fit
BANDWIDTHS = ("scott", "silverman", "fixed")   # toy.kde


@dataclass
class DDPMConfig:
    """Every knob of the toy DDPM (defaults: see README, calibrated in docs/calibration.md).

    Fields declared with option() are `madlab run` / `madlab sweep` options, results columns and
    part of the run id; the plain fields below them are internal (set by code, not by users)."""

    PANEL: ClassVar[str] = "Toy DDPM (--backend toy-ddpm)"

    learner: str = option(DEFAULT_LEARNER, choices=tuple(LEARNERS), help=(
        "The noise predictor and its recipe: resmlp-silu (residual SiLU MLP, no LayerNorm, "
        "sinusoidal time input; the default), resmlp-sin (the same with ReLU, the default before "
        "the tail screen; fused CPU kernels, faster), resmlp-ln (madlab 0.1's: LayerNorm, time "
        "input t/T), "
        "toy-diffusion (the paper's cited learner, albarji/toy-diffusion: plain 4 x 64 MLP, raw "
        "t, T=39, Adam 1e-3 constant; the notebook's data standardisation is --standardize; "
        "autograd; the paper's setting). It presets T, depth, "
        "time-embedding, layer-norm, activation, lr and lr-schedule; giving one of them "
        "overrides it."))
    T: int = option(None, help="Diffusion steps [default: the learner's: 40; toy-diffusion 39].")
    schedule: str = option("cosine", choices=SCHEDULES, help="Noise schedule.")
    beta_start: float | None = None   # linear schedule only (None: Ho et al.'s, rescaled to T)
    beta_end: float | None = None     # linear schedule only
    width: int = option(64, help="Hidden units of the MLP.")
    depth: int = option(None, help=(
        "Residual blocks of the MLP (toy-diffusion: hidden layers) [default: the learner's: 2; "
        "toy-diffusion 4]."))
    time_embedding: str = option(None, choices=TIME_EMBEDDINGS, help=(
        "Time input: scaled (t/T), raw (t) or sinusoidal [default: the learner's: resmlp-silu "
        "and resmlp-sin sinusoidal, resmlp-ln scaled, toy-diffusion raw]."))
    n_frequencies: int = 8            # sinusoidal embedding: frequencies
    layer_norm: bool = option(None, help=(
        "LayerNorm inside the residual blocks [default: the learner's: only resmlp-ln has it]."))
    activation: str = option(None, choices=ACTIVATION_NAMES, help=(
        "Activation of the MLP [default: the learner's: resmlp-silu silu, others relu]."))
    batch_size: int = option(2048, help=(
        "Minibatch size; >= |D| is full batch (the calibrated default, docs/calibration.md)."))
    lr: float = option(None, help=(
        "Adam learning rate, also the auxiliary fine-tune's [default: the learner's: 3e-3; "
        "toy-diffusion 1e-3]."))
    lr_schedule: str = option(None, choices=LR_SCHEDULES, help=(
        "linear: decay to lr*lr_end_factor over each training call; constant [default: the "
        "learner's: linear; toy-diffusion constant]."))
    lr_end_factor: float = option(0.01, help="Final learning-rate factor of the linear schedule.")
    variance: str = option("beta", choices=VARIANCES, help=(
        "Sampler variance sigma_t^2: beta (beta_t) or posterior (beta-tilde_t)."))
    finetune: str = option("restart", choices=FINETUNE_STARTS, help=(
        "How the SIMS auxiliary fine-tune starts: restart (fresh Adam, lr schedule from lr again, "
        "as the paper's section 3 suggests) or continue (the base's Adam moments and step count, "
        "at the lr where the base's schedule ended)."))
    guide_t_min: int = option(1, help=(
        "SIMS guidance only at reverse steps t with guide-t-min <= t <= guide-t-max (the paper's "
        "appendix A); elsewhere the auxiliary model is not evaluated."))
    guide_t_max: int = option(None, help=(
        "Last reverse step with SIMS guidance (see guide-t-min) [default: the learner's: "
        "resmlp-silu T/4, resmlp-sin T/2 (the low-noise end of the chain); others T, the whole "
        "chain]; below guide-t-min: no guidance."))
    standardize: bool = option(False, id_if_default=False, help=(
        "Train on D^t standardised by one scalar mean and std over all its coordinates, "
        "recomputed every generation, and map samples back (the toy-diffusion notebook's "
        "x = (x - x.mean()) / x.std(); toy.standardize). The SIMS auxiliary model keeps its "
        "base's scalars."))
    device: str = "cpu"               # set from the run's --device
    seed_block: int | None = None     # speed only: seeds trained together (None: ~10000 rows per block
                                      # fused on CPU, 16 seeds with torch ops on CPU, all on GPU)
    sample_rows: int | None = None    # speed only: seeds x points per sampling block (None: 4096
                                      # fused / 1024 torch ops on CPU, all on GPU)
    kernels: str | None = None        # speed only: auto | fused | torch | compile (None: $MADLAB_KERNELS,
                                      # else auto; compile: torch.compile, opt-in, toy/compiled.py)

    def validate(self) -> "DDPMConfig":
        """Fill the knobs left at None from the learner (and guide_t_max from T), then check
        every option; ConfigError (one line) for bad input. Resolved in place, so the run id
        hashes the values the run uses: --learner resmlp-ln equals its explicit knobs."""
        for name, value in LEARNERS.get(self.learner, {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.guide_t_max is None and isinstance(self.T, int):
            self.guide_t_max = round(GUIDED_SHARE.get(self.learner, 1.0) * self.T)
        for name in ("lr", "lr_end_factor"):   # before check(): its inf test reads the default
            value = getattr(self, name)
            require(not isinstance(value, float) or math.isfinite(value),
                    f"{label(self, name)} must be a finite number, got {value!r}")
        check(self)
        positive(self, "T", "width", "batch_size", "lr", "guide_t_min")
        non_negative(self, "depth", "lr_end_factor", "guide_t_max")
        require(self.guide_t_max <= self.T,
                f"guide-t-max must be at most T = {self.T}, got {self.guide_t_max}")
        if self.learner in REFERENCE_LEARNERS:
            require(not self.layer_norm, f"the {self.learner} learner is a plain MLP: it has no "
                                         "LayerNorm (drop --layer-norm)")
            require(self.variance == "beta", f"the {self.learner} learner samples with variance "
                                             "beta (drop --variance)")
        require((self.seed_block or 1) >= 1 and (self.sample_rows or 1) >= 1,
                "seed_block and sample_rows must be positive")
        require(self.kernels in (None, *KERNEL_MODES),
                f"unknown kernels {self.kernels!r}; choose one of {', '.join(KERNEL_MODES)}")
        return self

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


@dataclass
class GaussianFitConfig:
    """The closed-form Gaussian fit (toy.gaussian_fit.GaussianFit): classic MAD analytics."""

    PANEL: ClassVar[str] = "Gaussian fit (--backend gaussian)"

    estimator: str = option("mle", choices=ESTIMATORS, help=(
        "Covariance estimator: mle (divide by n) or unbiased (n-1)."))
    sampling_bias: float = option(1.0, help=(
        "lambda: sample N(mu, lambda Sigma); < 1 is mode-seeking (the MAD paper's sampling bias)."))

    def validate(self) -> "GaussianFitConfig":
        check(self)
        positive(self, "sampling_bias")
        return self


@dataclass
class KDEConfig:
    """The Gaussian kernel density estimator (toy.kde.KDE)."""

    PANEL: ClassVar[str] = "Kernel density estimator (--backend kde)"

    bandwidth: str = option("scott", choices=BANDWIDTHS, help=(
        "Kernel covariance K: scott (n^(-2/(d+4)) times the data's covariance), silverman "
        "((n(d+2)/4)^(-2/(d+4)) times it) or fixed (h^2 I, --kde-h)."))
    kde_h: float = option(0.1, help="The fixed bandwidth h (--bandwidth fixed): K = h^2 I.")

    def validate(self) -> "KDEConfig":
        check(self)
        positive(self, "kde_h")
        return self
