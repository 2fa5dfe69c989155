"""Options of the EDM image backend (madlab.edm.backend.EDMBackend) and its FID; torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from loops.options import ConfigError, check, non_negative, option, positive, require
from madlab.edm.weights import find_inception_weights

NETWORK_NAMES = ("tiny", "small", "medium", "ddpmpp-cifar10")   # madlab.edm.networks.NETWORKS
PRECONDITIONINGS = ("edm", "vp")                                # Karras et al. 2022, Table 1
BUDGETS = ("epochs", "kimg")
FEATURES = ("auto", "classifier", "pixels", "inception")       # madlab.edm.features


def resolve_features(name: str, dataset: str) -> str:
    """`auto`: the classifier for `digits` (labelled, tiny), Inception for any other data set."""
    if name == "auto":
        return "classifier" if dataset == "digits" else "inception"
    return name


@dataclass
class EDMConfig:
    """Every knob of the EDM backend. Options (option()) have flat names edm_<field> unless
    they say otherwise (flat=...); the plain fields are internal constants of the method."""

    PANEL: ClassVar[str] = "EDM images (--backend edm)"
    PREFIX: ClassVar[str] = "edm_"

    dataset: str = option("digits", flat="dataset", help=(
        "p_r: digits (scikit-learn's bundled 8x8 digits), a .npz of uint8 images, or a folder of "
        "images. Read from disk only, never downloaded."))
    net: str = option("tiny", choices=NETWORK_NAMES, help=(
        "U-Net size: tiny (CPU tests), small (CPU demo), medium (GPU minutes), ddpmpp-cifar10 "
        "(EDM's CIFAR-10 DDPM++)."))
    precond: str = option("edm", choices=PRECONDITIONINGS, help=(
        "Preconditioning and loss of Karras et al. 2022, Table 1."))
    sigma_data: float = 0.5           # σ_data of the EDM preconditioning and loss
    P_mean: float = -1.2              # ln σ ~ N(P_mean, P_std²) while training (EDM)
    P_std: float = 1.2
    lr: float = option(1e-3, help=(
        "Adam learning rate (warm-up over the first kimg of each training call)."))
    batch_size: int = option(64, flat="edm_batch", help="Images per training step and seed.")
    lr_rampup_kimg: float = 1.0       # linear learning-rate warm-up over the first kimg of every training call
    ema_kimg: float = option(2.0, help=(
        "EMA half-life in thousands of images; samples come from the EMA weights. 0 = no EMA."))
    ema_rampup: float = 0.05          # half-life is at most ema_rampup × images seen so far
    budget: str = option("epochs", choices=BUDGETS, help=(
        "Unit of --epochs and --aux-epochs: epochs (passes over D^t or S) or kimg (thousands of "
        "images seen, the paper's unit)."))
    num_steps: int = option(18, flat="edm_steps", help=(
        "Heun sampler steps N (2N-1 network evaluations, twice that with SIMS guidance)."))
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    S_churn: float = option(0.0, flat="edm_churn", help=(
        "S_churn of the sampler (0 = deterministic probability-flow ODE)."))
    S_min: float = 0.0
    S_max: float = float("inf")
    S_noise: float = 1.0
    guide_sigma_lo: float = option(0.0, flat="guide_sigma_lo", help=(
        "SIMS guidance acts only for noise levels sigma >= this."))
    guide_sigma_hi: float = option(float("inf"), flat="guide_sigma_hi", help=(
        "SIMS guidance acts only for noise levels sigma <= this (inf = no bound)."))
    fid_features: str = option("auto", flat="fid_features", choices=FEATURES, help=(
        "FID features: auto (classifier for digits, inception otherwise), classifier (small MLP "
        "trained on the data set's labels, CPU), pixels, inception (needs madlab[fid] or "
        "--fid-weights)."))
    fid_weights: str = option("", flat="fid_weights", help=(
        "Inception-v3 TorchScript file for --fid-features inception ('': the one madlab[fid] "
        "installs)."))
    sample_batch: int = 1000          # images per sampler batch (memory knob; results do not change)
    quantize: bool = True             # samples are rounded to 8-bit levels, as stored images are
    amp: bool = True                  # bfloat16 autocast while training on CUDA
    checkpoint_dir: str = option("", flat="edm_checkpoints", identity=False, help=(
        "Folder to save every trained ensemble in (edm-0001.pt, ...); '' = none."))
    device: str = "cpu"               # set from the run's --device

    def validate(self) -> "EDMConfig":
        check(self)
        positive(self, "batch_size", "sample_batch", "lr", "sigma_data")
        non_negative(self, "ema_kimg", "lr_rampup_kimg", "S_churn")
        require(self.num_steps >= 2, f"the Heun sampler needs at least 2 steps, got {self.num_steps}")
        require(0 < self.sigma_min < self.sigma_max, "need 0 < sigma_min < sigma_max")
        require(0 <= self.guide_sigma_lo <= self.guide_sigma_hi,
                "need 0 <= guide-sigma-lo <= guide-sigma-hi")
        self.fid_features = resolve_features(self.fid_features, self.dataset)
        return self

    def sampler(self) -> dict:
        return dict(num_steps=self.num_steps, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                    rho=self.rho, S_churn=self.S_churn, S_min=self.S_min, S_max=self.S_max,
                    S_noise=self.S_noise)

    def check_data(self, metrics: list[str]) -> None:
        """Load the data set (cached) and check that the network, the images and the FID
        features fit together; ConfigError (one line) otherwise. Imports torch."""
        from madlab.edm.data import load_images_cached
        from madlab.edm.networks import make_unet

        try:
            images = load_images_cached(self.dataset)
            make_unet(self.net, images.images.shape[2], images.images.shape[1])
            if images.images.shape[2] != images.images.shape[3]:
                raise ValueError(f"dataset {self.dataset!r}: square images only")
            if "fid" in metrics and self.fid_features == "classifier" and images.labels is None:
                raise ValueError(f"dataset {self.dataset!r} has no labels for the classifier features; "
                                 "use --fid-features pixels or inception")
            if "fid" in metrics and self.fid_features == "inception":
                find_inception_weights(self.fid_weights or None)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None
