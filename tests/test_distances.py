"""Distances: exact OT (POT) and the closed-form Gaussian W2 / Frechet distance."""
import numpy as np
import pytest
import scipy.linalg
import torch

from analysis.distances import frechet_to_gaussian, gaussian_w2, per_seed, w1, w2
from loops.rng import SeedStreams
from toy.targets import paper_gaussian


@pytest.fixture
def cloud():
    g = torch.Generator().manual_seed(0)
    return torch.randn(300, 2, generator=g) @ torch.tensor([[1.4, 0.0], [0.7, 1.2]])


def test_distance_of_a_set_to_itself_is_zero(cloud):
    assert w2(cloud, cloud) == pytest.approx(0.0, abs=1e-9)
    assert w1(cloud, cloud) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("v", [(3.0, 4.0), (-0.5, 0.2)])
def test_distance_to_a_shifted_copy_is_the_shift(cloud, v):
    shift = torch.tensor(v)
    assert w2(cloud, cloud + shift) == pytest.approx(float(shift.norm()), rel=1e-6)
    assert w1(cloud, cloud + shift) == pytest.approx(float(shift.norm()), rel=1e-6)


def test_distance_is_symmetric_and_positive(cloud):
    other = cloud[:150] * 1.3
    assert w2(cloud[150:], other) == pytest.approx(w2(other, cloud[150:]), rel=1e-9)
    assert w2(cloud[150:], other) > 0


def reference_gaussian_w2(m1, S1, m2, S2):
    """Dowson & Landau with scipy's general matrix square root."""
    r2 = scipy.linalg.sqrtm(S2)
    cross = np.real(scipy.linalg.sqrtm(r2 @ S1 @ r2))
    return np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * cross))


def test_closed_form_w2_matches_a_scipy_reference():
    rng = np.random.default_rng(1)
    for _ in range(5):
        A, B = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
        S1, S2 = A @ A.T + 0.1 * np.eye(3), B @ B.T + 0.1 * np.eye(3)
        m1, m2 = rng.normal(size=3), rng.normal(size=3)
        ours = float(gaussian_w2(m1, S1, m2, S2))
        assert ours == pytest.approx(reference_gaussian_w2(m1, S1, m2, S2), rel=1e-8)


def test_closed_form_w2_special_cases():
    I = torch.eye(2, dtype=torch.float64)
    # same covariance: the distance of the means
    assert float(gaussian_w2(torch.zeros(2), I, torch.tensor([3.0, 4.0]), I)) == pytest.approx(5.0)
    # commuting covariances: |sqrt(S1) - sqrt(S2)|_F
    assert float(gaussian_w2(torch.zeros(2), 4 * I, torch.zeros(2), I)) == pytest.approx(np.sqrt(2))


def test_sample_w2_converges_to_the_closed_form():
    """Far-apart Gaussians, 2000 points each: the sample estimate is within 3 % of the truth."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(2000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) + torch.tensor([3.0, 0.0])
    exact = float(gaussian_w2(torch.zeros(2), torch.eye(2), torch.tensor([3.0, 0.0]),
                              torch.diag(torch.tensor([4.0, 1.0]))))
    assert exact == pytest.approx(np.sqrt(10))
    assert w2(x, y) == pytest.approx(exact, rel=0.03)


def test_frechet_distance_of_true_samples_vanishes_with_sample_size():
    target = paper_gaussian()
    keys = SeedStreams(range(4)).keys("eval")
    small = frechet_to_gaussian(target.sample(500, keys), target.mean, target.cov)
    large = frechet_to_gaussian(target.sample(50_000, keys), target.mean, target.cov)
    assert large.mean() < small.mean() / 4        # ~ n^(-1/2): 100x the points, ~10x smaller
    assert large.max() < 0.03


def test_frechet_distance_sees_a_wrong_covariance():
    target = paper_gaussian()
    wide = target.sample(50_000, SeedStreams(range(2)).keys("eval")) * 1.5
    truth = float(gaussian_w2(target.mean, target.cov, target.mean, 2.25 * target.cov))
    assert per_seed("fd", wide, target=target).numpy() == pytest.approx([truth, truth], rel=0.02)


def test_exact_w2_floor_between_two_real_samples_is_about_point_two():
    """DESIGN.md: exact OT between two 1000-point samples of p_r has a floor of about 0.19."""
    target = paper_gaussian()
    streams = SeedStreams(range(8))
    a, b = target.sample(1000, streams.keys("eval")), target.sample(1000, streams.keys("eval-real"))
    floor = per_seed("w2", a, b).mean().item()
    assert 0.12 < floor < 0.3


def test_diverged_samples_give_nan_not_a_number_that_looks_fine(cloud):
    broken = cloud[:100].clone()
    broken[3, 0] = float("nan")
    assert np.isnan(w2(broken, cloud))
    assert np.isnan(w1(cloud, broken))
