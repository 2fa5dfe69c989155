"""FID: the Fréchet distance against scipy and the Gaussian closed form; features; the cached metric."""
import numpy as np
import pytest
import scipy.linalg
import torch

from analysis.distances import gaussian_w2
from analysis.fid import feature_stats, fid_from_features, frechet_distance
from madlab.edm.data import ImageSet, load_images, to_unit
from madlab.edm.evaluate import FidMetric
from madlab.edm.features import PixelFeatures, find_inception_weights, make_features


def random_spd(rng, d, scale=1.0):
    A = rng.normal(size=(d, d))
    return scale * (A @ A.T / d + 0.1 * np.eye(d))


def scipy_frechet(mu1, S1, mu2, S2):
    """The textbook reference: |mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)), real part."""
    covmean = scipy.linalg.sqrtm(S1 @ S2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(S1 + S2 - 2 * covmean))


@pytest.mark.parametrize("d", [2, 7, 64])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    S1, S2 = random_spd(rng, d), random_spd(rng, d, 3.0)
    assert frechet_distance(mu1, S1, mu2, S2) == pytest.approx(scipy_frechet(mu1, S1, mu2, S2), rel=1e-8, abs=1e-9)


def test_frechet_closed_form_for_commuting_gaussians():
    """Diagonal covariances: FID = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2."""
    a, b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_fid_is_the_squared_gaussian_w2():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    S1, S2 = random_spd(rng, 5), random_spd(rng, 5)
    assert frechet_distance(mu1, S1, mu2, S2) == pytest.approx(float(gaussian_w2(mu1, S1, mu2, S2)) ** 2, rel=1e-9)
    assert frechet_distance(mu1, S1, mu1, S1) == pytest.approx(0.0, abs=1e-9)


def test_fid_handles_singular_covariances():
    """Fewer samples than dimensions give a singular covariance; the eigenvalue form stays real and >= 0."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 32)), rng.normal(size=(10, 32)) + 0.5
    value = fid_from_features(x, feature_stats(y))
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(scipy_frechet(*feature_stats(x), *feature_stats(y)), rel=1e-6)


def test_feature_stats_are_float64_and_unbiased():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    mu, S = feature_stats(torch.from_numpy(x))
    assert mu.dtype == np.float64 and S.dtype == np.float64
    np.testing.assert_allclose(S, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


def test_fid_estimate_converges_to_the_population_value():
    """Samples of two known Gaussians: the estimated FID approaches the closed form as n grows."""
    rng = np.random.default_rng(4)
    S1, S2 = random_spd(rng, 3), random_spd(rng, 3)
    mu1, mu2 = np.zeros(3), np.ones(3)
    x = rng.multivariate_normal(mu1, S1, size=200_000)
    value = fid_from_features(x, (mu2, S2))
    assert value == pytest.approx(frechet_distance(mu1, S1, mu2, S2), rel=0.02)


def test_fid_metric_caches_reference_statistics(tmp_path):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(40, 1, 4, 4), dtype=np.uint8)
    data = ImageSet("rand", images, None, "rand-test")
    metric = FidMetric(data, PixelFeatures(), cache=tmp_path)
    same = to_unit(images[:20]).unsqueeze(0)
    other = (to_unit(images[:20]) * 0.2).unsqueeze(0)
    values = metric(torch.cat([same, other]))
    assert metric.path.is_file()
    mu, S = feature_stats(to_unit(images).flatten(1))
    np.testing.assert_allclose(metric.reference()[1], S, rtol=1e-12)
    assert values[0] < values[1]  # a subset of the data is closer than a shrunken copy
    again = FidMetric(data, PixelFeatures(), cache=tmp_path)
    assert again(torch.cat([same, other])).tolist() == values.tolist()


def test_digits_classifier_features_separate_classes(tmp_path, monkeypatch):
    """The domain extractor: real digits are far closer to their own statistics than noise is."""
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path))
    data = load_images("digits")
    features = make_features("classifier", data)
    x = to_unit(data.images)
    f = features(x)
    assert f.shape == (len(x), 64) and f.dtype == np.float64
    metric = FidMetric(data, features, cache=tmp_path)
    real = fid_from_features(features(x[:500]), metric.reference())
    noise = fid_from_features(features(torch.rand(500, 1, 8, 8) * 2 - 1), metric.reference())
    assert noise > 20 * real
    # cached weights give the same features
    np.testing.assert_allclose(make_features("classifier", data)(x[:10]), f[:10], rtol=1e-4, atol=1e-4)


def test_inception_features_from_local_weights():
    try:
        path = find_inception_weights()
    except FileNotFoundError:
        pytest.skip("madlab[fid] (local Inception weights) not installed")
    from madlab.edm.features import InceptionFeatures

    features = InceptionFeatures(str(path))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    f = features(x)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    np.testing.assert_allclose(features(x[:1]), f[:1], rtol=1e-4, atol=1e-5)
