"""`RunConfig`: every option of one run, validated, resolved and hashable.

The config is flat on purpose: a sweep can vary any field by name, and every field becomes a
column of the results table.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from analysis.distances import METRICS
from loops.algorithms import ALGORITHMS
from loops.kinds import LOOP_KINDS
from toy.ddpm import ACTIVATIONS, LR_SCHEDULES, TIME_EMBEDDINGS, VARIANCES, DDPMConfig
from toy.gaussian_fit import ESTIMATORS
from toy.schedules import SCHEDULES
from toy.targets import TARGETS

BACKENDS = ("toy-ddpm", "gaussian", "edm")
IMAGE_METRICS = ("fid", "w2", "w1")  # what the edm backend can measure (w1/w2: exact OT on pixels)
EDM_FIELDS = ("dataset", "edm_net", "edm_precond", "edm_budget", "edm_batch", "edm_lr", "edm_ema_kimg",
              "edm_steps", "edm_churn", "guide_sigma_lo", "guide_sigma_hi", "fid_features",
              "fid_weights", "edm_checkpoints")


class ConfigError(ValueError):
    """Bad user input: reported as one line on stderr with exit code 2."""


@dataclass
class RunConfig:
    # the loop
    loop: str = "augment"             # fully-synthetic | augment | fresh | accumulate
    algo: str = "sims"                # standard | sims | sims-param
    omega: float = 3.0                # SIMS guidance weight w
    gens: int = 100                   # generations T
    seeds: int = 16                   # independent runs, vectorized
    first_seed: int = 0               # seeds are first_seed .. first_seed + seeds - 1
    n_real: int = 1000                # |D_r|
    n_synth: int = 250                # |D_s^t| per generation
    n_aux: int = 2000                 # SIMS n_s = |S|
    aux_epochs: float = 50            # SIMS budget B, epochs of fine-tuning on S
    epochs: float = 100               # epochs of base training per generation
    warm_start: bool = False          # start G^t from G^{t-1} instead of a fresh init
    backend: str = "toy-ddpm"         # toy-ddpm | gaussian | edm
    target: str = "gaussian2d"        # gaussian2d | mixture2d
    metric: list[str] = field(default_factory=list)  # w2 | w1 | fd | fid (one or more); empty: w2 (toy), fid (edm)
    n_eval: int = 1000                # model samples (and real samples for w1/w2) per evaluation
    device: str = "cpu"
    seed_chunk: int = 1024            # most seeds trained together in one tensor
    # toy DDPM
    T: int = 40
    schedule: str = "cosine"
    width: int = 64
    depth: int = 2
    time_embedding: str = "scaled"
    layer_norm: bool = True
    activation: str = "relu"
    batch_size: int = 2048            # full batch for |D| <= 2048 (docs/calibration.md)
    lr: float = 3e-3
    lr_schedule: str = "linear"
    lr_end_factor: float = 0.01
    variance: str = "beta"
    # Gaussian fit
    estimator: str = "mle"
    sampling_bias: float = 1.0        # lambda: sample N(mu, lambda Sigma)
    # EDM image backend (madlab.edm)
    dataset: str = "digits"           # digits | PATH.npz | PATH/ (folder of images)
    edm_net: str = "tiny"             # U-Net size: tiny | small | medium | ddpmpp-cifar10
    edm_precond: str = "edm"          # edm | vp preconditioning and loss
    edm_budget: str = "epochs"        # unit of epochs / aux_epochs: epochs over D^t | kimg (thousands of images)
    edm_batch: int = 64
    edm_lr: float = 1e-3
    edm_ema_kimg: float = 2.0         # EMA half-life in thousands of images; 0: no EMA
    edm_steps: int = 18               # Heun steps
    edm_churn: float = 0.0            # S_churn of the sampler
    guide_sigma_lo: float = 0.0       # SIMS guidance only for guide_sigma_lo <= sigma <= guide_sigma_hi
    guide_sigma_hi: float = float("inf")
    fid_features: str = "auto"        # auto | classifier | pixels | inception
    fid_weights: str = ""             # Inception TorchScript file ('' = the one madlab[fid] installs)
    edm_checkpoints: str = ""         # folder for checkpoints of every trained ensemble ('' = none)

    # ------------------------------------------------------------------
    def validate(self) -> "RunConfig":
        def choice(name, options):
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(f"unknown {name.replace('_', ' ')} {value!r}; choose one of "
                                  f"{', '.join(options)}")

        choice("loop", LOOP_KINDS)
        choice("algo", ALGORITHMS)
        choice("backend", BACKENDS)
        choice("target", tuple(TARGETS))
        choice("schedule", SCHEDULES)
        choice("time_embedding", TIME_EMBEDDINGS)
        choice("activation", tuple(ACTIVATIONS))
        choice("lr_schedule", LR_SCHEDULES)
        choice("variance", VARIANCES)
        choice("estimator", ESTIMATORS)
        if isinstance(self.metric, str):
            self.metric = [m for m in self.metric.split(",") if m]
        if not self.metric:
            self.metric = ["fid"] if self.backend == "edm" else ["w2"]
        allowed = IMAGE_METRICS if self.backend == "edm" else METRICS
        for m in self.metric:
            if m not in allowed:
                raise ConfigError(f"unknown metric {m!r} for backend {self.backend}; choose one of {', '.join(allowed)}")
        if self.backend == "edm":
            self.validate_edm()
        for name in ("gens", "seeds", "n_real", "n_synth", "n_aux", "n_eval", "T", "width",
                     "batch_size", "seed_chunk"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("epochs", "aux_epochs", "lr", "sampling_bias"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value == value):
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number, got {value}")
        if not isinstance(self.omega, (int, float)) or self.omega != self.omega:
            raise ConfigError(f"omega must be a number, got {self.omega!r}")
        if self.first_seed < 0:
            raise ConfigError(f"first-seed must be non-negative, got {self.first_seed}")
        if self.depth < 0:
            raise ConfigError(f"depth must be non-negative, got {self.depth}")
        if self.n_eval < 2 and "fd" in self.metric:
            raise ConfigError("fd needs n-eval >= 2")
        if self.device.startswith("cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ConfigError(f"device {self.device!r} asked for, but torch sees no CUDA device")
        elif self.device not in ("cpu", "mps"):
            raise ConfigError(f"unknown device {self.device!r}; use cpu, cuda or cuda:N")
        return self

    def validate_edm(self) -> None:
        from madlab.edm.data import load_images_cached
        from madlab.edm.features import FEATURES, find_inception_weights, resolve_features
        from madlab.edm.networks import make_unet

        for name in ("edm_batch", "edm_steps"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.fid_features not in FEATURES:
            raise ConfigError(f"unknown fid features {self.fid_features!r}; choose one of {', '.join(FEATURES)}")
        self.fid_features = resolve_features(self.fid_features, self.dataset)
        try:
            self.edm().validate()
            images = load_images_cached(self.dataset)
            make_unet(self.edm_net, images.images.shape[2], images.images.shape[1])
            if images.images.shape[2] != images.images.shape[3]:
                raise ValueError(f"dataset {self.dataset!r}: square images only")
            if "fid" in self.metric and self.fid_features == "classifier" and images.labels is None:
                raise ValueError(f"dataset {self.dataset!r} has no labels for the classifier features; "
                                 "use --fid-features pixels or inception")
            if "fid" in self.metric and self.fid_features == "inception":
                find_inception_weights(self.fid_weights or None)
        except (ValueError, FileNotFoundError) as e:
            raise ConfigError(str(e)) from None

    def edm(self):
        """The EDM backend's config (madlab.edm.backend.EDMConfig)."""
        from madlab.edm.backend import EDMConfig

        return EDMConfig(net=self.edm_net, precond=self.edm_precond, budget=self.edm_budget,
                         batch_size=self.edm_batch, lr=self.edm_lr, ema_kimg=self.edm_ema_kimg,
                         num_steps=self.edm_steps, S_churn=self.edm_churn,
                         guide_sigma_lo=self.guide_sigma_lo, guide_sigma_hi=self.guide_sigma_hi,
                         checkpoint_dir=self.edm_checkpoints or None, device=self.device)

    def ddpm(self) -> DDPMConfig:
        return DDPMConfig(T=self.T, schedule=self.schedule, width=self.width, depth=self.depth,
                          time_embedding=self.time_embedding, layer_norm=self.layer_norm,
                          activation=self.activation, batch_size=self.batch_size, lr=self.lr,
                          lr_schedule=self.lr_schedule, lr_end_factor=self.lr_end_factor,
                          variance=self.variance, device=self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields that change the numbers (device and chunking only change speed)."""
        d = self.to_dict()
        for key in ("device", "seed_chunk", "edm_checkpoints"):
            d.pop(key)
        if d["backend"] != "edm":  # the image backend's options change nothing elsewhere
            for key in EDM_FIELDS:
                d.pop(key, None)
        return d

    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))
