"""The toy world: target distributions, the vectorized toy DDPM, the closed-form Gaussian fit."""
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.gaussian_fit import GaussianFit
from toy.targets import TARGETS, Gaussian, GaussianMixture, make_target

__all__ = ["DDPMConfig", "Gaussian", "GaussianFit", "GaussianMixture", "TARGETS", "ToyDDPM",
           "make_target"]
