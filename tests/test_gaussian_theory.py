"""SIMS and the accumulate family on the Gaussian fit: closed forms against the simulated loop."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import gaussian_theory as th
from loops import Loop, SeedStreams, make_algorithm
from loops.kinds import subsample, training_set
from madlab.cli import main
from madlab.experiments import accumulate, mad_loops, sims_theory
from madlab.experiments.sims_theory import _trace, sampled_models
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian

TR = float(_trace(paper_gaussian().cov))
Z = 4.0          # |z| bound: with ~40 checks below, a correct formula exceeds it with probability < 1e-3


def z_score(values: torch.Tensor, predicted: float) -> float:
    v = values.to(torch.float64)
    return float((v.mean() - predicted) / (v.std() / math.sqrt(len(v))))


# --------------------------------------------------------------------------- closed forms alone

@pytest.mark.parametrize("estimator,bias", [("mle", 1.0), ("unbiased", 1.0), ("mle", 0.9)])
def test_standard_training_is_mad_loops_theory(estimator, bias):
    m = th.param_moments("fully-synthetic", 12, 40, 15, bias=bias, estimator=estimator)
    cov, drift = mad_loops.fully_synthetic_theory(12, 40, 15, estimator, bias)
    assert np.allclose(m["cov"], cov.numpy(), rtol=1e-12) and np.allclose(m["drift"], drift.numpy(), rtol=1e-12)
    if estimator == "mle":
        for kind, key in (("augment", "drift_real"), ("fresh", "drift")):
            f, V = mad_loops.mixing_limits(kind, 40, 15, estimator, bias)
            limit = th.param_moments(kind, 400, 40, 15, bias=bias)
            assert limit["cov"][-1] == pytest.approx(f, rel=1e-9) and limit[key][-1] == pytest.approx(V, rel=1e-9)


def test_omega_star_undoes_the_estimators_shrinkage():
    assert th.omega_star(100, 2000) == pytest.approx(2000 / 99)
    assert th.param_gain(3.0, 50) == pytest.approx(1 + 3 / 50)
    # with |D_r| = |D_s| every generation's E[S_t] is Sigma exactly
    m = th.param_moments("fully-synthetic", 20, 30, 30, omega=th.omega_star(30, 60), n_aux=60)
    assert np.allclose(m["cov"], 1.0, rtol=1e-12)
    # with a sampling bias the fixed point holds E[S_t] constant from t = 2 on
    m = th.param_moments("fully-synthetic", 20, 30, 50, omega=th.omega_star(50, 60, 0.9), n_aux=60, bias=0.9)
    assert np.allclose(m["cov"][1:], m["cov"][1], rtol=1e-12) and m["cov"][1] > 1
    assert th.classify(1.01, 0.5) == "prevented" and th.classify(0.8, 0.5) == "mitigated"
    assert th.classify(2.5, 0.5) == "worse"


def test_accumulate_keeps_the_mean_error_below_pi2_over_6_and_fully_synthetic_does_not():
    for est in ("mle", "unbiased"):
        m = th.param_moments("accumulate", 300, 50, 50, estimator=est)
        assert (m["drift"] * 50 < th.PI2_6).all()
        assert m["drift"][-1] * 50 > 0.97 * th.PI2_6          # and comes close to it
    assert th.param_moments("fully-synthetic", 300, 50, 50, estimator="unbiased")["drift"][-1] * 50 > 100


# --------------------------------------------------------------------------- against simulation

SEEDS = 1500
CASES = [("fully-synthetic", 1.0, 1.0), ("fully-synthetic", "star", 0.9), ("augment", 2.0, 1.0),
         ("accumulate", 1.0, 0.9), ("accumulate-subsample", 2.0, 1.0)]


@pytest.mark.parametrize("kind,omega,bias", CASES)
def test_sims_param_matches_its_closed_form(kind, omega, bias):
    n_real, n_synth, n_aux, gens = 20, 12, 40, 5
    w = th.omega_star(n_synth, n_aux, bias) if omega == "star" else omega
    mu, S, first = sampled_models(kind, "sims-param", w, bias, SeedStreams(range(SEEDS)), gens,
                                  n_real, n_synth, n_aux)
    pred = th.param_moments(kind, gens, n_real, n_synth, omega=w, n_aux=n_aux, bias=bias)
    for t in (0, gens - 1):
        assert abs(z_score(_trace(S[t]) / TR, pred["cov"][t])) < Z
        assert abs(z_score((mu[t] ** 2).sum(-1) / TR, pred["drift"][t])) < Z
        assert abs(z_score(((mu[t] - first) ** 2).sum(-1) / TR, pred["drift_real"][t])) < Z
    # and the theory is not trivially satisfied: SIMS moved the covariance away from standard's
    standard = th.param_moments(kind, gens, n_real, n_synth, bias=bias)
    assert abs(pred["cov"][-1] - standard["cov"][-1]) > 0.02


@pytest.mark.parametrize("kind", ["accumulate", "accumulate-subsample"])
def test_the_accumulate_family_matches_its_recursion(kind):
    mu, S, _ = sampled_models(kind, "standard", 0.0, 1.0, SeedStreams(range(SEEDS)), 6, 15, 10, 2)
    pred = th.param_moments(kind, 6, 15, 10)
    for t in range(6):
        assert abs(z_score(_trace(S[t]) / TR, pred["cov"][t])) < Z
        assert abs(z_score((mu[t] ** 2).sum(-1) / TR, pred["drift"][t])) < Z


@pytest.mark.parametrize("bias", [1.0, 0.8])
def test_score_space_sims_precision_matches_the_inverse_wishart_mean(bias):
    gens, n_real, n_synth, n_aux, w = 4, 60, 40, 80, 1.0
    _, S, _ = sampled_models("fully-synthetic", "sims", w, bias, SeedStreams(range(SEEDS)), gens,
                             n_real, n_synth, n_aux)
    prec = torch.einsum("ij,tnji->tn", paper_gaussian().cov.double(), torch.linalg.inv(S)) / 2
    pred = th.score_precision(gens, n_real, n_synth, w, n_aux, bias)
    for t in range(gens):
        assert abs(z_score(prec[t], pred[t])) < Z
    assert pred[-1] != pytest.approx(th.score_precision(gens, n_real, n_synth, 0.0, n_aux, bias)[-1], rel=0.02)


# --------------------------------------------------------------------------- the loop kind

def test_accumulate_subsample_draws_a_fixed_size_without_replacement_from_the_pool():
    backend, target, streams = GaussianFit(), paper_gaussian(), SeedStreams([3, 4, 5])
    loop = Loop("accumulate-subsample", make_algorithm("standard"), backend, target, n_real=20,
                n_synth=7, generations=4, n_eval=2)
    assert [r.train_size for r in loop.run(streams, lambda x, t: {})] == [20] * 4
    real = target.sample(20, streams.keys("real", 1))
    synthetic = [torch.randn(3, 7, 2) for _ in range(3)]
    pool = torch.cat([real, *synthetic], 1)
    data = training_set("accumulate-subsample", 4, real, synthetic, streams.keys("subsample", 4))
    assert data.shape == (3, 20, 2)
    for k in range(3):
        rows = {tuple(p.tolist()) for p in pool[k]}
        picked = [tuple(p.tolist()) for p in data[k]]
        assert set(picked) <= rows and len(set(picked)) == 20           # drawn from the pool, no repeats
    # seed k's subset does not depend on the seeds beside it
    alone = subsample(pool[1:2], 20, SeedStreams([4]).keys("subsample", 4))
    assert torch.equal(alone[0], data[1])
    with pytest.raises(ValueError, match="random streams"):
        training_set("accumulate-subsample", 2, real, synthetic[:1])


def cli(*args):
    with pytest.raises(SystemExit) as done:
        main(list(args))
    assert done.value.code == 0


def test_madlab_run_sweep_and_report_with_accumulate_subsample(tmp_path, capsys):
    out = tmp_path / "r"
    cli("run", "--backend", "gaussian", "--loop", "accumulate-subsample", "--gens", "3", "--seeds", "3",
        "--n-real", "30", "--n-synth", "10", "--n-eval", "40", "--metric", "fd", "--algo", "standard",
        "--out", str(out), "--quiet", "--jobs", "1")
    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame["loop"]) == {"accumulate-subsample"} and set(frame["train_size"]) == {30}
    assert len(frame[frame["metric"] == "fd"]) == 9
    sweep = tmp_path / "s"
    cli("sweep", "--backend", "gaussian", "--loop", "accumulate,accumulate-subsample", "--gens", "3",
        "--seeds", "2", "--n-real", "30", "--n-synth", "10", "--n-eval", "40", "--metric", "fd",
        "--algo", "standard,sims-param", "--n-aux", "20", "--out", str(sweep), "--quiet", "--jobs", "1")
    frame = pd.read_parquet(sweep / "results.parquet")
    sizes = frame[frame["generation"] == 3].groupby("loop")["train_size"].agg(set).to_dict()
    assert sizes == {"accumulate": {50}, "accumulate-subsample": {30}}
    capsys.readouterr()
    cli("report", str(sweep))
    assert "accumulate-subsample" in capsys.readouterr().out


# --------------------------------------------------------------------------- the experiments

def test_the_experiments_at_smoke_size_agree_with_their_theory():
    for module in (sims_theory, accumulate):
        result = module.run(module.Settings.at("smoke"))
        z = result.summary["z"].dropna().abs()
        assert len(z) >= 20 and z.max() < Z
        if module is sims_theory:
            cells = result.tables["map"]
            assert set(cells["theory"]) <= {"standard", "prevented", "mitigated", "worse"}
            exact = cells[cells["floored"] == 0]           # where the closed form holds
            assert len(exact) >= 6 and exact["z"].abs().max() < Z
            assert (exact["theory"] == exact["simulation"]).all()
            assert (cells.loc[cells["omega"] <= 1, "floored"] == 0).all() and cells["floored"].max() > 0


def test_a_resumed_accumulate_subsample_loop_ends_bit_identical():
    def loop():
        return Loop("accumulate-subsample", make_algorithm("standard"), GaussianFit(), paper_gaussian(),
                    n_real=12, n_synth=5, generations=5, n_eval=3)

    streams = SeedStreams([7, 8])
    whole = list(loop().run(streams, lambda x, t: {"m": x.mean((1, 2))}, keep_models=True))
    state = whole[1].state                                   # stopped after generation 2
    assert len(state.synthetic) == 2                         # keeps every D_s^t
    rest = list(loop().run(streams, lambda x, t: {"m": x.mean((1, 2))}, keep_models=True, resume=state))
    assert [r.generation for r in rest] == [3, 4, 5]
    for a, b in zip(whole[2:], rest):
        assert torch.equal(a.metrics["m"], b.metrics["m"])
        assert torch.equal(a.model.model[1], b.model.model[1])
