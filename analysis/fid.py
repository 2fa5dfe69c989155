"""Fréchet distance between feature Gaussians (FID, Heusel et al. 2017), in float64.

Convention: FID is the *squared* 2-Wasserstein distance between N(mu1, S1) and N(mu2, S2),
    FID = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^(1/2) S2 S1^(1/2))^(1/2))  =  gaussian_w2(...)^2,
with unbiased (n - 1) covariances, as in the standard FID. The trace of the matrix square root is
computed through the symmetric eigenvalue form: tr((S1^(1/2) S2 S1^(1/2))^(1/2)) = sum_i sqrt(l_i),
l_i the eigenvalues of the symmetric PSD matrix S1^(1/2) S2 S1^(1/2) (negative round-off -> 0), so
no non-symmetric `sqrtm` (and none of its `disp` / complex-part handling) is needed.
"""
from __future__ import annotations

import numpy as np
import torch

from analysis.distances import sqrtm_psd


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean [d] and unbiased covariance [d, d] of features [n, d], float64."""
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features,
                   dtype=np.float64).reshape(len(features), -1)
    if len(x) < 2:
        raise ValueError(f"need at least 2 feature vectors, got {len(x)}")
    return x.mean(0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, S1, mu2, S2) -> float:
    """FID between N(mu1, S1) and N(mu2, S2): the squared W2 (see module docstring), float64."""
    mu1, S1, mu2, S2 = (torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in (mu1, S1, mu2, S2))
    r1 = sqrtm_psd(S1)
    inner = r1 @ S2 @ r1
    eig = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0)
    value = ((mu1 - mu2) ** 2).sum() + torch.trace(S1) + torch.trace(S2) - 2 * eig.sqrt().sum()
    return float(value.clamp(min=0))


def fid_from_features(features, reference: tuple[np.ndarray, np.ndarray]) -> float:
    """FID between the Gaussian of features [n, d] and reference statistics (mu, S)."""
    mu, S = feature_stats(features)
    return frechet_distance(mu, S, *reference)
