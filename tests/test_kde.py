"""The Gaussian KDE backend: scipy's bandwidth rules, exact sampling, the exact covariance recursion."""
import math

import pandas as pd
import pytest
import torch

from loops import Loop, SeedStreams, make_algorithm
from madlab.cli import main
from madlab.config import ConfigError, RunConfig
from toy.kde import KDE, fully_synthetic_cov
from toy.targets import paper_gaussian

TARGET = paper_gaussian()
TR = float(torch.diagonal(TARGET.cov).sum())


def model_cov(model) -> torch.Tensor:
    """tr C / tr Sigma per seed, C = the KDE's covariance = MLE of its points + K."""
    points, K = model
    c = points - points.mean(1, keepdim=True)
    C = c.transpose(1, 2) @ c / points.shape[1] + K
    return torch.diagonal(C, dim1=-2, dim2=-1).sum(-1) / TR


@pytest.mark.parametrize("rule", ["scott", "silverman"])
def test_bandwidth_rules_are_scipys(rule):
    stats = pytest.importorskip("scipy.stats")
    data = TARGET.sample(37, SeedStreams([5]).keys("real", 1)).double()
    _, K = KDE(bandwidth=rule).train(None, data, 1, None)
    reference = stats.gaussian_kde(data[0].numpy().T, bw_method=rule).covariance
    assert torch.allclose(K[0], torch.from_numpy(reference), rtol=1e-10)


def test_sampling_picks_points_and_adds_the_kernel():
    data = TARGET.sample(10, SeedStreams([1, 2]).keys("real", 1))
    tight = KDE(bandwidth="fixed", h=1e-6).train(None, data, 1, None)
    x = KDE().sample(tight, 500, SeedStreams([1, 2]).keys("synth", 1))
    gap = torch.cdist(x.double(), data.double()).amin(-1)
    assert gap.max() < 1e-4                                          # every sample sits on a data point
    # seed 2's samples do not depend on seed 1
    alone = KDE().sample((tight[0][1:], tight[1][1:]), 500, SeedStreams([2]).keys("synth", 1))
    assert torch.equal(alone[0], x[1])
    # a wide kernel: the sample covariance is the points' MLE plus K (many samples, loose bound)
    model = KDE(bandwidth="fixed", h=1.0).train(None, data, 1, None)
    y = KDE().sample(model, 200_000, SeedStreams([1, 2]).keys("synth", 2)).double()
    sample_cov = torch.stack([torch.cov(s.T, correction=0) for s in y])
    assert (torch.diagonal(sample_cov,
                           dim1=-2, dim2=-1).sum(-1) / TR - model_cov(model)).abs().max() < 0.03


@pytest.mark.parametrize("rule,h", [("fixed", 0.5), ("scott", 0.0)])
def test_fully_synthetic_covariance_follows_the_exact_recursion(rule, h):
    gens, n_real, n_synth, seeds = 5, 30, 20, 2000
    loop = Loop("fully-synthetic", make_algorithm("standard"), KDE(bandwidth=rule, h=h or 0.1), TARGET,
                n_real, n_synth, gens, n_eval=2)
    covs = [model_cov(r.model.model) for r in loop.run(SeedStreams(range(seeds)), lambda x, t: {}, keep_models=True)]
    pred = fully_synthetic_cov(gens, n_real, n_synth, rule, h or 0.1, TR)
    for t in range(gens):
        z = (covs[t].mean() - pred[t]) / (covs[t].std() / math.sqrt(seeds))
        assert abs(float(z)) < 4
    assert pred[-1] > 1.0                     # the KDE's covariance grows where the Gaussian fit's shrinks


@pytest.mark.parametrize("kind", ["fully-synthetic", "augment", "fresh", "accumulate", "accumulate-subsample"])
def test_every_loop_runs_with_the_kde(kind, tmp_path):
    out = tmp_path / kind
    with pytest.raises(SystemExit) as done:
        main(["run", "--backend", "kde", "--algo", "standard", "--loop", kind, "--gens", "2", "--seeds", "2",
              "--n-real", "20", "--n-synth", "10", "--n-eval", "30", "--metric", "fd", "--bandwidth", "fixed",
              "--kde-h", "0.2", "--out", str(out), "--quiet", "--jobs", "1"])
    assert done.value.code == 0
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["backend"]) == {"kde"} and set(frame["bandwidth"]) == {"fixed"}
    assert (frame.loc[frame["metric"] == "fd", "value"] > 0).all()


@pytest.mark.parametrize("algo", ["sims", "sims-param"])
def test_sims_is_refused_in_one_line(algo, capsys):
    with pytest.raises(ConfigError, match="--backend kde supports --algo standard only"):
        RunConfig.from_flat(backend="kde", algo=algo).validate()
    with pytest.raises(SystemExit) as done:
        main(["run", "--backend", "kde", "--algo", algo, "--gens", "2", "--seeds", "2", "--quiet"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no exact sampler" in err


def test_a_kde_sweep_and_its_report(tmp_path, capsys):
    out = tmp_path / "s"
    with pytest.raises(SystemExit) as done:
        main(["sweep", "--backend", "kde", "--algo", "standard", "--loop", "fully-synthetic,accumulate-subsample",
              "--bandwidth", "scott,fixed", "--gens", "3", "--seeds", "2", "--n-real", "20", "--n-synth", "10",
              "--n-eval", "30", "--metric", "fd", "--out", str(out), "--quiet", "--jobs", "1"])
    assert done.value.code == 0
    frame = pd.read_parquet(out / "results.parquet")
    assert frame["run"].nunique() == 4 and set(frame["bandwidth"]) == {"scott", "fixed"}
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["report", str(out)])
    assert done.value.code == 0 and "scott" in capsys.readouterr().out
