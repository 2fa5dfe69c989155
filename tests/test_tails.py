"""Tail diagnostics (analysis/tails.py): the outlier share of p_r's own samples is p_r's known
rate, and the distance on inliers is the plain distance when nothing is dropped."""
from __future__ import annotations

import doctest
import math

import pytest
import torch

import analysis.tails as tails
from analysis.distances import per_seed
from analysis.tails import distance_on_inliers, inlier_mask, mahalanobis_radius, outlier_share, own_rate
from loops.rng import SeedStreams
from toy.targets import paper_gaussian, two_mode_mixture


def _binomial_ok(share: float, p: float, n: int, sigmas: float = 4.5) -> bool:
    return abs(share - p) <= sigmas * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.0])
def test_outlier_share_of_p_r_itself_is_its_chi_rate(radius):
    """2-D Gaussian: r^2 ~ chi2_2, so P(r > R) = exp(-R^2 / 2) (0.61, 0.14, 0.011)."""
    target = paper_gaussian()
    x = target.sample(50_000, SeedStreams(range(4)).keys("eval"))
    p = math.exp(-radius ** 2 / 2)
    assert own_rate(target, radius) == pytest.approx(p, rel=1e-12)
    share = outlier_share(x, target, radius)
    assert share.shape == (4,)
    assert _binomial_ok(float(share.mean()), p, x.shape[0] * x.shape[1])
    assert all(_binomial_ok(float(s), p, x.shape[1]) for s in share)


def test_radius_five_rate_and_a_far_point():
    target = paper_gaussian()
    assert own_rate(target) == pytest.approx(math.exp(-12.5), rel=1e-12)
    x = target.sample(100_000, SeedStreams([0]).keys("eval"))
    assert float(outlier_share(x, target)) <= 5e-5          # 0.37 expected in 100 000
    # (x^T Sigma^-1 x) for Sigma = [[2, 1], [1, 2]]: Sigma^-1 = [[2, -1], [-1, 2]] / 3
    point = torch.tensor([[3.0, -3.0]])
    assert float(mahalanobis_radius(point, target)) == pytest.approx(math.sqrt(54 / 3))


def test_mixture_radius_is_the_nearest_mode_and_rate_matches():
    target = two_mode_mixture()                              # modes (-3, 0), (3, 0), unit covariance
    r = mahalanobis_radius(torch.tensor([[3.0, 1.0], [-3.0, -2.0], [0.0, 0.0]]), target)
    torch.testing.assert_close(r, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    x = target.sample(50_000, SeedStreams(range(2)).keys("eval"))
    assert _binomial_ok(float(outlier_share(x, target, 2.0).mean()), math.exp(-2), 100_000)
    assert own_rate(target) == pytest.approx(math.exp(-12.5), rel=1e-12)


@pytest.mark.parametrize("metric", ["w2", "w1", "fd"])
def test_distance_on_inliers_is_the_plain_distance_without_outliers(metric):
    target = paper_gaussian()
    streams = SeedStreams(range(3))
    x = target.sample(400, streams.keys("eval")) * 1.2 + 0.1   # a model a little off
    real = target.sample(400, streams.keys("eval-real"))
    assert inlier_mask(x, target).all() and inlier_mask(real, target).all()
    plain = per_seed(metric, x, real if metric != "fd" else None, target)
    torch.testing.assert_close(distance_on_inliers(metric, x, real, target), plain, rtol=1e-12, atol=1e-12)


def test_distance_on_inliers_drops_exactly_the_outliers():
    target = paper_gaussian()
    streams = SeedStreams(range(2))
    x = target.sample(300, streams.keys("eval"))
    real = target.sample(300, streams.keys("eval-real"))
    far = x.clone()
    far[:, :5] = torch.tensor([80.0, -60.0])                 # 5 far points per seed
    assert torch.equal(outlier_share(far, target), torch.full((2,), 5 / 300, dtype=torch.float64))
    on_inliers = distance_on_inliers("w2", far, real, target)
    torch.testing.assert_close(on_inliers, per_seed("w2", far[:, 5:], real), rtol=1e-12, atol=1e-12)
    assert (per_seed("w2", far, real) > 5 * on_inliers).all()   # the plain distance is the tail's


def test_docstring_examples():
    assert doctest.testmod(tails).failed == 0
