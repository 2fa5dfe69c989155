"""Options of the toy world: the targets' names, the toy DDPM's and the Gaussian fit's options.

Torch-free (the CLI reads it at start-up); the code they configure is in `toy.targets`,
`toy.ddpm` and `toy.gaussian_fit`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from loops.options import check, non_negative, option, positive, require

TARGET_NAMES = ("gaussian2d", "mixture2d")     # toy.targets.TARGETS builds them
SCHEDULES = ("cosine", "linear")               # toy.schedules.alpha_bar
TIME_EMBEDDINGS = ("scaled", "raw", "sinusoidal")
ACTIVATION_NAMES = ("relu", "silu", "gelu", "tanh")   # toy.ddpm.ACTIVATIONS
VARIANCES = ("beta", "posterior")
LR_SCHEDULES = ("linear", "constant")
KERNEL_MODES = ("auto", "fused", "torch")     # toy.fused: $MADLAB_KERNELS
ESTIMATORS = ("mle", "unbiased")               # toy.gaussian_fit


@dataclass
class DDPMConfig:
    """Every knob of the toy DDPM (defaults: see README, calibrated in docs/calibration.md).

    Fields declared with option() are `madlab run` / `madlab sweep` options, results columns and
    part of the run id; the plain fields below them are internal (set by code, not by users)."""

    PANEL: ClassVar[str] = "Toy DDPM (--backend toy-ddpm)"

    T: int = option(40, help="Diffusion steps.")
    schedule: str = option("cosine", choices=SCHEDULES, help="Noise schedule.")
    beta_start: float | None = None   # linear schedule only (None: Ho et al.'s, rescaled to T)
    beta_end: float | None = None     # linear schedule only
    width: int = option(64, help="Hidden units of the MLP.")
    depth: int = option(2, help="Residual blocks of the MLP.")
    time_embedding: str = option("scaled", choices=TIME_EMBEDDINGS,
                                 help="Time input: scaled (t/T), raw (t) or sinusoidal.")
    n_frequencies: int = 8            # sinusoidal embedding: frequencies
    layer_norm: bool = option(True, help="LayerNorm inside the blocks.")
    activation: str = option("relu", choices=ACTIVATION_NAMES, help="Activation of the MLP.")
    batch_size: int = option(2048, help=(
        "Minibatch size; >= |D| is full batch (the calibrated default, docs/calibration.md)."))
    lr: float = option(3e-3, help="Adam learning rate (the auxiliary model uses the same).")
    lr_schedule: str = option("linear", choices=LR_SCHEDULES, help=(
        "linear: decay to lr*lr_end_factor over each training call; constant."))
    lr_end_factor: float = option(0.01, help="Final learning-rate factor of the linear schedule.")
    variance: str = option("beta", choices=VARIANCES, help=(
        "Sampler variance sigma_t^2: beta (beta_t) or posterior (beta-tilde_t)."))
    device: str = "cpu"               # set from the run's --device
    seed_block: int | None = None     # speed only: seeds trained together (None: ~10000 rows per block
                                      # fused on CPU, 16 seeds with torch ops on CPU, all on GPU)
    sample_rows: int | None = None    # speed only: seeds x points per sampling block (None: 4096
                                      # fused / 1024 torch ops on CPU, all on GPU)
    kernels: str | None = None        # speed only: auto | fused | torch (None: $MADLAB_KERNELS, else auto)

    def validate(self) -> "DDPMConfig":
        check(self)
        positive(self, "T", "width", "batch_size", "lr")
        non_negative(self, "depth", "lr_end_factor")
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
