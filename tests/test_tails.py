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


# ------------------------------------------------------------------ as every run records them

def _dirty_pair(seeds=4, n=120):
    """Model samples with far points in seeds 1 and 3 only, and their real samples."""
    target = paper_gaussian()
    streams = SeedStreams(range(seeds))
    x = target.sample(n, streams.keys("eval")) * 1.1
    real = target.sample(n, streams.keys("eval-real"))
    if seeds == 4:
        x[1, :3] = torch.tensor([40.0, 30.0])
        x[3, :1] = torch.tensor([-90.0, 5.0])
    return target, x, real


@pytest.mark.parametrize("metric", ["w2", "w1", "fd"])
@pytest.mark.parametrize("solver", ["pot", "auction"])
def test_inlier_distance_matches_the_reference_on_mixed_seeds(metric, solver, monkeypatch):
    """Clean seeds through per_seed (the batched auction when MADLAB_OT=auction: the device
    path), seeds with outliers through POT on their inliers (sizes differ): the reference's values."""
    monkeypatch.setenv("MADLAB_OT", solver)
    target, x, real = _dirty_pair()
    real_or_none = None if metric == "fd" else real
    reference = distance_on_inliers(metric, x, real_or_none, target)
    got = tails.inlier_distance(metric, x, real_or_none, target)
    torch.testing.assert_close(got, reference, rtol=1e-6 if solver == "auction" else 1e-12, atol=1e-12)
    plain = per_seed(metric, x, real_or_none, target)
    assert (got[[1, 3]] < plain[[1, 3]]).all()                  # the far points are dropped


def test_inlier_distance_reuses_the_plain_value_without_solving(monkeypatch):
    """A seed with nothing to drop gets the plain value, bit for bit, with no second OT solve."""
    target, x, real = _dirty_pair()
    plain = per_seed("w2", x, real)
    solved = []
    monkeypatch.setattr(tails, "per_seed", lambda *a, **k: pytest.fail("solved a clean seed again"))
    monkeypatch.setattr(tails, "pot_each", lambda pairs, p, n_jobs: solved.append(len(pairs))
                        or torch.zeros(len(pairs), dtype=torch.float64))
    got = tails.inlier_distance("w2", x, real, target, plain=plain)
    assert solved == [2]                                         # seeds 1 and 3 only
    assert torch.equal(got[[0, 2]], plain[[0, 2]])


def test_a_real_outlier_is_dropped_too():
    target, x, real = _dirty_pair()
    real[0, 0] = torch.tensor([0.0, 60.0])
    plain = per_seed("w2", x, real)
    got = tails.inlier_distance("w2", x, real, target, plain=plain)
    assert got[0] != plain[0]
    assert float(got[0]) == pytest.approx(per_seed("w2", x[:1], real[:1, 1:])[0].item(), rel=1e-12)


def test_fewer_than_two_inliers_is_nan():
    target, x, real = _dirty_pair(seeds=1, n=3)
    x[0] = torch.tensor([[50.0, 0.0], [0.0, 70.0], [0.1, 0.2]])
    assert torch.isnan(tails.inlier_distance("w2", x, real, target)).all()
    assert torch.isnan(tails.inlier_distance("fd", x, None, target)).all()


def test_fd_on_inliers_of_a_mixture_uses_its_total_moments():
    target = two_mode_mixture()
    x = target.sample(300, SeedStreams(range(2)).keys("eval"))
    torch.testing.assert_close(distance_on_inliers("fd", x, None, target), per_seed("fd", x, None, target),
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ end to end, through the runner

GAUSS = dict(backend="gaussian", loop="augment", gens=3, seeds=4, n_real=500, n_synth=250, n_eval=300)


def test_every_run_records_the_tails_and_inliers_equal_plain_without_outliers(monkeypatch):
    """The Gaussian fit's samples have (at these seeds) nothing beyond radius 5: every m_inlier
    row is its m row exactly, and no second OT problem was solved for it."""
    from madlab.config import RunConfig
    from madlab.runner import run_config

    monkeypatch.setattr(tails, "pot_each", lambda *a, **k: pytest.fail("a second OT solve"))
    frame = run_config(RunConfig.from_flat(metric="w2,w1,fd", **GAUSS))
    wide = frame.pivot_table(index=["seed", "generation"], columns="metric", values="value")
    assert list(dict.fromkeys(frame["metric"])) == ["w2", "w1", "fd", "outlier_share",
                                                    "w2_inlier", "w1_inlier", "fd_inlier"]
    assert len(wide) == 4 * 3 and (wide["outlier_share"] == 0).all()
    for m in ("w2", "w1", "fd"):
        assert (wide[f"{m}_inlier"] == wide[m]).all()
    assert (frame["metric_set"] == "w2,w1,fd").all()           # the chosen distances


def test_tails_can_be_turned_off_or_chosen_alone():
    from madlab.config import RunConfig
    from madlab.runner import run_config

    plain = run_config(RunConfig.from_flat(metric="w2", tails=False, **GAUSS))
    assert set(plain["metric"]) == {"w2"}
    alone = run_config(RunConfig.from_flat(metric="outlier_share,w1_inlier", **GAUSS))
    assert list(dict.fromkeys(alone["metric"])) == ["outlier_share", "w1_inlier"]
    with_tails = run_config(RunConfig.from_flat(metric="w2", **GAUSS))
    key = ["seed", "generation", "metric"]
    # the tails add rows and change no other number, nor the run id
    assert with_tails[with_tails.metric == "w2"].set_index(key)["value"].equals(plain.set_index(key)["value"])
    assert RunConfig.from_flat(tails=False, **GAUSS).validate().run_id() == \
        RunConfig.from_flat(**GAUSS).validate().run_id()


def test_the_edm_backend_records_no_tails():
    from madlab.config import ConfigError, RunConfig

    cfg = RunConfig.from_flat(backend="edm")
    cfg.evaluation.metric = ["fid", "w2"]
    assert cfg.recorded_metrics() == ["fid", "w2"]
    with pytest.raises(ConfigError, match="unknown metric 'outlier_share' for backend edm"):
        RunConfig.from_flat(backend="edm", metric="outlier_share").validate()
