"""Options of the toy world: the targets' names, the toy DDPM's and the Gaussian fit's options
(the named learners the toy DDPM presets from are toy.learners).

Torch-free (the CLI reads it at start-up); the code they configure is in `toy.targets`,
`toy.ddpm` and `toy.gaussian_fit`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from loops.options import check, label, non_negative, option, positive, require
from toy.learners import DEFAULT_LEARNER, LEARNERS, learner_help
from toy.learners import REFERENCE_LEARNERS, learner_default  # noqa: F401 (toy.ddpm, experiments)

TARGET_NAMES = ("gaussian2d", "mixture2d")     # toy.targets.TARGETS builds them
SCHEDULES = ("cosine", "linear")               # toy.schedules.alpha_bar
TIME_EMBEDDINGS = ("scaled", "raw", "sinusoidal")
ACTIVATION_NAMES = ("relu", "silu", "gelu", "tanh")   # toy.ddpm.ACTIVATIONS
VARIANCES = ("beta", "posterior")
LR_SCHEDULES = ("linear", "constant")
KERNEL_MODES = ("auto", "fused", "torch", "compile")  # toy.fused: $MADLAB_KERNELS; compile: toy.compiled
FINETUNE_STARTS = ("restart", "continue")      # how the SIMS auxiliary fine-tune starts
PRECISIONS = ("fp32", "bf16")                  # matrix products: toy.compiled._mm, toy.reference

ESTIMATORS = ("mle", "unbiased")               # toy.gaussian_fit
BANDWIDTHS = ("scott", "silverman", "fixed")   # toy.kde


@dataclass
class DDPMConfig:
    """Every knob of the toy DDPM (defaults: see README, calibrated in docs/calibration.md).

    Fields declared with option() are `madlab run` / `madlab sweep` options, results columns and
    part of the run id; the plain fields below them are internal (set by code, not by users)."""

    PANEL: ClassVar[str] = "Toy DDPM (--backend toy-ddpm)"

    learner: str = option(DEFAULT_LEARNER, choices=tuple(LEARNERS), help=learner_help())   # toy.learners
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
    precision: str = option("fp32", choices=PRECISIONS, id_if_default=False, help=(
        "Precision of the network's matrix products, training and sampling: fp32, or bf16 "
        "(operands rounded to bfloat16, float32 accumulation; parameters, Adam, activations and "
        "the sampler's state stay float32). bf16 is faster where the CPU has bf16 instructions "
        "(AVX512-BF16, AMX) or on a GPU, and changes the numbers: measured in "
        "docs/performance.md. resmlp-*: through torch.compile; toy-diffusion: torch.autocast."))
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
        learner = LEARNERS.get(self.learner)       # an unknown name is refused by check() below
        for name, value in (learner.knobs() if learner else {}).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.guide_t_max is None and isinstance(self.T, int):
            self.guide_t_max = round((learner.guided_share if learner else 1.0) * self.T)
        for name in ("lr", "lr_end_factor"):   # before check(): its inf test reads the default
            value = getattr(self, name)
            require(not isinstance(value, float) or math.isfinite(value),
                    f"{label(self, name)} must be a finite number, got {value!r}")
        check(self)
        positive(self, "T", "width", "batch_size", "lr", "guide_t_min")
        non_negative(self, "depth", "lr_end_factor", "guide_t_max")
        require(self.guide_t_max <= self.T,
                f"guide-t-max must be at most T = {self.T}, got {self.guide_t_max}")
        if learner and not learner.fast:          # runs on toy.reference
            require(not self.layer_norm, f"the {self.learner} learner is a plain MLP: it has no "
                                         "LayerNorm (drop --layer-norm)")
            require(self.variance == "beta", f"the {self.learner} learner samples with variance "
                                             "beta (drop --variance)")
        require((self.seed_block or 1) >= 1 and (self.sample_rows or 1) >= 1,
                "seed_block and sample_rows must be positive")
        require(self.kernels in (None, *KERNEL_MODES),
                f"unknown kernels {self.kernels!r}; choose one of {', '.join(KERNEL_MODES)}")
        require(self.precision == "fp32" or self.kernels in (None, "auto", "compile")
                or not (learner and learner.fast),      # toy.reference: autocast, no kernels
                f"precision bf16 runs on the compiled step (toy.compiled), not on kernels="
                f"{self.kernels!r}: leave kernels unset")
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
