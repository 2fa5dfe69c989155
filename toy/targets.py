"""Target distributions p_r with known moments, sampled per seed from that seed's stream, on the
streams' device."""
from __future__ import annotations

from dataclasses import dataclass
import torch

from loops.rng import StreamKeys


def _on(target, device: torch.device, *names: str) -> tuple[torch.Tensor, ...]:
    """The target's float64 constants `names` on `device`, copied there once and kept: a
    generation loop on a GPU draws every generation, and a copy from host memory would wait for
    the device's queue each time (docs/performance.md, transfers)."""
    cache = target.__dict__.setdefault("_device_copies", {})
    key = (device.type, device.index)
    if key not in cache:
        cache[key] = {name: getattr(target, name).to(device) for name in target.DEVICE_CONSTANTS}
    return tuple(cache[key][name] for name in names)


@dataclass
class Gaussian:
    """p_r = N(mean, cov). The SIMS paper's toy target is N(0, [[2, 1], [1, 2]])."""

    mean: torch.Tensor   # [d]
    cov: torch.Tensor    # [d, d]
    name: str = "gaussian"

    DEVICE_CONSTANTS = ("mean", "cov", "chol")   # kept on each device used (`_on`)

    def __post_init__(self):
        self.mean = torch.as_tensor(self.mean, dtype=torch.float64)
        self.cov = torch.as_tensor(self.cov, dtype=torch.float64)
        self.chol = torch.linalg.cholesky(self.cov)
        self.event_shape = tuple(self.mean.shape)

    def moments_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, cov) on `device`, copied there once (`analysis.distances.per_seed`'s fd)."""
        return _on(self, torch.device(device), "mean", "cov")

    def sample(self, n: int, keys: StreamKeys) -> torch.Tensor:
        z = keys.randn((n, self.mean.numel()), dtype=torch.float64)
        mean, chol = _on(self, z.device, "mean", "chol")
        return (mean + z @ chol.T).float()


@dataclass
class GaussianMixture:
    """p_r = sum_j weights[j] N(means[j], covs[j]); `sample_with_modes` also returns the mode."""

    weights: torch.Tensor  # [m]
    means: torch.Tensor    # [m, d]
    covs: torch.Tensor     # [m, d, d]
    name: str = "mixture"

    DEVICE_CONSTANTS = ("weights", "means", "covs", "chols", "mean", "cov")  # `_on`

    def __post_init__(self):
        self.weights = torch.as_tensor(self.weights, dtype=torch.float64)
        self.weights = self.weights / self.weights.sum()
        self.means = torch.as_tensor(self.means, dtype=torch.float64)
        self.covs = torch.as_tensor(self.covs, dtype=torch.float64)
        self.chols = torch.linalg.cholesky(self.covs)
        self.event_shape = (self.means.shape[1],)

    @property
    def mean(self) -> torch.Tensor:
        return self.weights @ self.means

    @property
    def cov(self) -> torch.Tensor:
        """Total covariance: within-mode plus between-mode spread."""
        centred = self.means - self.mean
        return (torch.einsum("m,mij->ij", self.weights, self.covs)
                + torch.einsum("m,mi,mj->ij", self.weights, centred, centred))

    def sample_with_modes(self, n: int, keys: StreamKeys, weights: torch.Tensor | None = None):
        """Samples [N, n, d] and their mode index [N, n]; `weights` overrides the mixture weights."""
        d = self.means.shape[1]
        u = keys.rand((n,), dtype=torch.float64)                  # picks the mode
        z = keys.randn((n, d), dtype=torch.float64)
        w, means, chols = _on(self, u.device, "weights", "means", "chols")
        if weights is not None:  # an override: moved to the draws' device (a host tensor is copied)
            w = torch.as_tensor(weights, dtype=torch.float64, device=u.device)
        cdf = torch.cumsum(w / w.sum(), 0)
        mode = torch.searchsorted(cdf, u).clamp(max=len(w) - 1)
        x = means[mode] + torch.einsum("Nnij,Nnj->Nni", chols[mode], z)
        return x.float(), mode

    def sample(self, n: int, keys: StreamKeys) -> torch.Tensor:
        return self.sample_with_modes(n, keys)[0]

    def moments_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, cov) on `device`, copied there once."""
        return _on(self, torch.device(device), "mean", "cov")


def paper_gaussian() -> Gaussian:
    """The SIMS paper's section 4.2.1 target: N([0, 0], [[2, 1], [1, 2]])."""
    return Gaussian(torch.zeros(2), torch.tensor([[2.0, 1.0], [1.0, 2.0]]), name="gaussian2d")


def two_mode_mixture() -> GaussianMixture:
    """Two well-separated equal-weight modes at (-3, 0) and (3, 0), unit covariance."""
    return GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[-3.0, 0.0], [3.0, 0.0]]),
                           torch.eye(2).repeat(2, 1, 1), name="mixture2d")


TARGETS = {"gaussian2d": paper_gaussian, "mixture2d": two_mode_mixture}  # names: toy.config.TARGET_NAMES


def make_target(name: str):
    try:
        return TARGETS[name]()
    except KeyError:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
