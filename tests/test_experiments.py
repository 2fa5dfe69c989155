"""The toy analogues of the paper's other experiments (madlab.experiments): cheap, checkable pieces."""
import dataclasses
import json

import pytest
import torch

from loops import Loop, SeedStreams
from loops.algorithms import Standard
from madlab.experiments import landscape, mad_loops, pollution, shift
from toy.ddpm import ToyDDPM
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian, two_mode_mixture


def z(values: torch.Tensor, predicted: float) -> float:
    v = values.to(torch.float64)
    return float((v.mean() - predicted) / (v.std() / len(v) ** 0.5))


# ------------------------------------------------------------------ Figure 3: landscape
@pytest.fixture(scope="module")
def three_models():
    from toy.ddpm import DDPMConfig
    backend = ToyDDPM(DDPMConfig(T=10, width=16, depth=1, batch_size=32))
    s = SeedStreams([0, 1])
    data = paper_gaussian().sample(64, s.keys("real"))
    r = backend.train(backend.init(s.keys("init")), data, 2, s.keys("train"))
    a = backend.train(r, data * 1.1, 2, s.keys("finetune", 1))
    aux = backend.train(r, data * 0.9, 2, s.keys("finetune", 2))
    return backend, s, r, a, aux


def test_landscape_origin_is_exactly_the_base_model(three_models):
    backend, s, r, a, aux = three_models
    theta = landscape.theta(backend, r, a, aux, 0.0, 0.0)
    assert all(torch.equal(theta[k], r[k]) for k in r)
    x0 = backend.sample(theta, 50, s.keys("eval"))
    assert torch.equal(x0, backend.sample(r, 50, s.keys("eval")))


def test_landscape_paths(three_models):
    backend, s, r, a, aux = three_models
    adv = landscape.theta(backend, r, a, aux, -1.0, 0.0)          # w_a = -1: the advanced model
    assert all(torch.equal(adv[k], a[k]) for k in r)
    sims = landscape.theta(backend, r, a, aux, 0.0, 2.0)          # Eq. 6 with w = 2
    assert all(torch.allclose(sims[k], 3 * r[k] - 2 * aux[k], atol=1e-6) for k in r)
    assert not all(torch.allclose(sims[k], r[k]) for k in r)


# ------------------------------------------------------------------ Figure 7: shift
def test_assign_modes_recovers_the_true_modes():
    mixture = two_mode_mixture()
    x, modes = mixture.sample_with_modes(4000, SeedStreams([3]).keys("real"))
    agree = (shift.assign_modes(x, mixture) == modes).double().mean()
    assert agree > 0.995  # modes at (±3, 0), unit covariance: Phi(-3) = 0.13 % are misassigned


@pytest.mark.parametrize("shares,size", [([0.7, 0.3], 1000), ([0.3, 0.7], 999), ([0.5, 0.5], 10)])
def test_curated_set_has_the_requested_proportions(shares, size):
    mixture = two_mode_mixture()
    x, _ = mixture.sample_with_modes(3 * size, SeedStreams([0, 1, 2]).keys("real"))
    modes = shift.assign_modes(x, mixture)
    S = shift.curate(x, modes, shares, size)
    assert S.shape == (3, size, 2)
    k = shift.counts(shares, size)
    assert sum(k) == size and abs(k[0] - shares[0] * size) <= 1
    got = shift.assign_modes(S, mixture)
    for seed in range(3):
        assert int((got[seed] == 0).sum()) == k[0] and int((got[seed] == 1).sum()) == k[1]
        pool = {tuple(p) for p in x[seed].tolist()}
        assert all(tuple(p) in pool for p in S[seed].tolist())   # a subsample, nothing invented


def test_curate_refuses_when_a_mode_is_short():
    mixture = two_mode_mixture()
    x, _ = mixture.sample_with_modes(100, SeedStreams([0]).keys("real"), weights=[0.95, 0.05])
    with pytest.raises(ValueError, match="mode 1"):
        shift.curate(x, shift.assign_modes(x, mixture), [0.3, 0.7], 100)


def test_density_product_reference_endpoints():
    assert shift.product_share(0.5, 0.3, 0.0) == pytest.approx(0.5)
    assert shift.product_share(0.5, 0.3, -1.0) == pytest.approx(0.3)
    assert shift.product_share(0.5, 0.3, 1.0) == pytest.approx(0.7)   # (0.5/0.3) : (0.5/0.7)


# ------------------------------------------------------------------ Figure 6: pollution
def test_pollution_budget_and_crossing():
    s = pollution.Settings.at(assignments=["n_real=1000", "epochs=100"])
    for n_p in (0, 250, 2000):
        assert pollution.epochs_for(s, 1000 + n_p) * (1000 + n_p) == pytest.approx(100 * 1000)
    real, pool = torch.zeros(2, 10, 2), torch.ones(2, 30, 2)
    assert pollution.polluted(real, pool, 5).shape == (2, 15, 2)
    assert pollution.polluted(real, pool, 5)[:, 10:].eq(1).all()
    assert pollution.crossing([0, 100, 200], [-1.0, -0.5, 0.5]) == pytest.approx(150)
    assert pollution.crossing([0, 100], [-1.0, -0.5]) is None


# ------------------------------------------------------------------ MAD loops, Gaussian fit
def small(**kw):
    return mad_loops.Settings.at().apply({"seeds": 1000, "gens": 8, "n_real": 10, "n_synth": 10, "tail": 4} | kw)


def test_fully_synthetic_covariance_collapse_matches_theory():
    s = small()
    mu, S = mad_loops.trajectory("fully-synthetic", SeedStreams(range(s.seeds)), s, estimator="mle")
    ratio = mad_loops._trace(S) / mad_loops._trace(paper_gaussian().cov)
    cov_th, _ = mad_loops.fully_synthetic_theory(s.loop.gens, s.loop.n_real, s.loop.n_synth, "mle", 1.0)
    assert cov_th[-1] == pytest.approx(0.9 ** 8)
    for t in (0, 3, 7):
        assert abs(z(ratio[t], float(cov_th[t]))) < 4
    assert ratio[-1].mean() < 0.55   # a loop that did not collapse (E = 1) fails


def test_fully_synthetic_mean_random_walk_is_linear():
    s = small()
    mu, S = mad_loops.trajectory("fully-synthetic", SeedStreams(range(s.seeds)), s, estimator="unbiased")
    drift = (mu ** 2).sum(-1) / float(mad_loops._trace(paper_gaussian().cov))
    _, th = mad_loops.fully_synthetic_theory(s.loop.gens, s.loop.n_real, s.loop.n_synth, "unbiased", 1.0)
    assert torch.allclose(th, torch.arange(1, 9, dtype=torch.float64) / 10)   # t / n: linear
    for t in (0, 7):
        assert abs(z(drift[t], float(th[t]))) < 4


def test_sampling_bias_shrinks_the_covariance_by_lambda_per_generation():
    s = small(seeds=50)
    streams = SeedStreams(range(50))
    _, S1 = mad_loops.trajectory("fully-synthetic", streams, s, bias=1.0)
    _, Sl = mad_loops.trajectory("fully-synthetic", streams, s, bias=0.8)
    for t in range(s.loop.gens):  # same random numbers: exact, seed by seed
        assert torch.allclose(Sl[t], 0.8 ** t * S1[t], rtol=1e-4, atol=1e-12)


def test_fresh_loop_driver_is_the_engine_loop():
    s = small(seeds=5, gens=4)
    streams = SeedStreams(range(5))
    ours = list(mad_loops.fresh_with_initial_size(GaussianFit(), paper_gaussian(), streams, s.loop.n_real, s))
    loop = Loop("fresh", Standard(epochs=1), GaussianFit(), paper_gaussian(), s.loop.n_real, s.loop.n_synth, s.loop.gens, 2)
    theirs = [r.model for r in loop.run(streams, lambda x, t: {}, keep_models=True)]
    for a, b in zip(ours, theirs):
        assert torch.equal(a.model[0], b.model[0]) and torch.equal(a.model[1], b.model[1])


def test_fresh_loop_limit_does_not_depend_on_the_initial_size():
    s = small(seeds=600, gens=14, n_real=20, n_synth=20, tail=6)
    streams, tr = SeedStreams(range(600)), float(mad_loops._trace(paper_gaussian().cov))
    f, V = mad_loops.mixing_limits("fresh", s.loop.n_real, s.loop.n_synth, "mle", 1.0)
    first, late = {}, {}
    for n0 in (3, 2000):
        mu, S = mad_loops.trajectory("fresh", streams, s, n_initial=n0)
        drift = (mu ** 2).sum(-1) / tr
        first[n0], late[n0] = float(drift[0].mean()), float(drift[-s.tail:].mean())
        assert late[n0] == pytest.approx(V, rel=0.1)
        assert float((mad_loops._trace(S[-s.tail:]) / tr).mean()) == pytest.approx(f, rel=0.05)
    assert first[3] > 50 * first[2000]                     # very different starts ...
    assert late[3] == pytest.approx(late[2000], rel=0.02)  # ... the same limit


def test_augment_drift_is_bounded_at_the_ar1_limit():
    s = small(seeds=600, gens=16, n_real=20, n_synth=20, tail=8)
    mu, S = mad_loops.trajectory("augment", SeedStreams(range(600)), s)
    tr = float(mad_loops._trace(paper_gaussian().cov))
    drift = ((mu - mu[0]) ** 2).sum(-1) / tr
    f, V = mad_loops.mixing_limits("augment", s.loop.n_real, s.loop.n_synth, "mle", 1.0)
    assert drift[-s.tail:].mean() == pytest.approx(V, rel=0.1)
    assert drift[-1].mean() < 3 * V            # no random walk: fully synthetic would be ~ t / n
    assert (mad_loops._trace(S[-s.tail:]) / tr).mean() == pytest.approx(f, rel=0.05)


# ------------------------------------------------------------------ the command
def test_experiment_command_writes_figure_table_and_settings(tmp_path, capsys):
    from madlab.cli import main
    out = tmp_path / "mad"
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "mad-loops", "--scale", "smoke", "--seeds", "40", "--quiet", "--out", str(out),
              "--set", "gens=6", "--set", "tail=3", "--set", "initial_sizes=5,50", "--set", "biases=1,0.9"])
    assert exit_.value.code == 0
    for name in ("figure.png", "figure.pdf", "table.csv", "table.md", "measurements.csv", "settings.json"):
        assert (out / name).stat().st_size > 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["settings"]["seeds"] == 40 and settings["settings"]["initial_sizes"] == [5, 50]
    assert "largest |z|" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["experiment", "shift", "--set", "nope=1"], "unknown setting 'nope'"),
    (["experiment", "shift", "--set", "omegas=1,2"], "must include -1"),
    (["experiment", "landscape", "--set", "n_aux=many"], "'many' is not an integer"),
    (["experiment", "landscape", "--n-aux", "many"], "'many' is not an integer"),
    (["experiment", "landscape", "--set", "omega=3"], "unknown setting 'omega'"),   # a run option landscape has not
    (["experiment", "mad-loops", "--set", "biases=1.5"], "biases must be in (0, 1]"),
    (["experiment", "pollution", "--set", "learner=toy-diffusion"], "unknown learner 'toy-diffusion' for the experiments"),
])
def test_experiment_command_bad_input_is_one_line(argv, message, capsys):
    from madlab.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_settings_override_types():
    s = shift.Settings.at("smoke", ["seeds=3", "omegas=-1,0,2", "aux_epochs=2.5"])
    assert s.seeds == 3 and s.omegas == [-1.0, 0.0, 2.0] and s.algo.aux_epochs == 2.5
    assert mad_loops.Settings.at("smoke", ["initial_sizes=4,8"]).initial_sizes == [4, 8]
    with pytest.raises(ValueError, match="'1.5' is not an integer"):
        shift.Settings.at("smoke", ["seeds=1.5"])


@pytest.mark.parametrize("module", [landscape, pollution, shift])
def test_toy_ddpm_batch_and_lr_are_settings(module, monkeypatch):
    """`--set batch_size=64 lr=0.001 learner=resmlp-ln` reaches the toy DDPM the experiment trains
    (the docs quote runs with those earlier defaults)."""
    built = []
    real = module.ddpm_backend

    def recording(device, **overrides):
        backend = real(device, **overrides)
        built.append(backend.config)
        raise RuntimeError("stop after building the backend")
    monkeypatch.setattr(module, "ddpm_backend", recording)
    s = module.Settings.at("smoke", ["batch_size=64", "lr=0.001", "learner=resmlp-ln"]).validate()
    with pytest.raises(RuntimeError, match="stop after building"):
        module.run(s)
    assert built[0].batch_size == 64 and built[0].lr == 0.001
    assert built[0].learner == "resmlp-ln" and built[0].layer_norm     # the documented numbers' learner
    assert module.Settings.at("smoke").toy_ddpm.learner == "resmlp-silu"
    with pytest.raises(ValueError, match="batch-size"):
        module.Settings.at("smoke", ["batch_size=0"]).validate()


def test_experiment_settings_compose_the_run_options():
    """An experiment's settings are the run's component configs (not a copy) plus its own."""
    from madlab.config import OPTIONS, RunConfig
    from madlab.experiments import EXPERIMENTS

    for name, cls in EXPERIMENTS.items():
        s = cls.at("smoke")
        assert isinstance(s, RunConfig), name
        for spec in cls.settings():
            if spec.path[0] in {f.name for f in dataclasses.fields(RunConfig)}:
                assert spec.help.startswith(next(o.help for o in OPTIONS if o.flat == spec.flat))  # the run's
    s = landscape.Settings.at("quick", ["n_aux=500", "algo.n_aux=600", "loop.epochs=3"])
    assert (s.algo.n_aux, s.loop.epochs, s.seeds, s.evaluation.metric) == (600, 3.0, 8, ["w2", "fd"])


def test_earlier_setting_names_still_work_with_a_note(capsys):
    s = landscape.Settings.at("smoke", ["metrics=w2"])
    assert s.evaluation.metric == ["w2"]
    err = capsys.readouterr().err.strip()
    assert err == "madlab: note: setting 'metrics' is now 'metric'"


def test_experiment_help_lists_its_settings_like_run(capsys):
    from madlab.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "landscape", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for heading in ("landscape:", "Loop:", "SIMS:", "Toy DDPM (--backend toy-ddpm):", "Evaluation and output:"):
        assert heading in out, heading
    for flag in ("--n-advanced", "--omega-a", "--n-real", "--epochs", "--n-aux", "--learner", "--lr",
                 "--metric", "--n-eval", "--seeds", "--device", "--set", "--scale"):
        assert flag in out, flag
    assert "--omega " not in out and "--gens" not in out and "--width" not in out   # run options it has not
    assert "[default: 8; smoke: 2, paper: 32]" in " ".join(out.split())          # seeds at each scale
    with pytest.raises(SystemExit) as exit_:
        main(["experiment"])                                                        # bare: the list
    assert exit_.value.code == 0 and "images-loop" in capsys.readouterr().out


def test_setting_flags_and_set_are_one_path(tmp_path, capsys):
    from madlab.cli import main

    for how, out in ((["--seeds", "30", "--gens", "5", "--tail", "2"], "a"),
                     (["--set", "seeds=30", "--set", "gens=5", "--set", "tail=2"], "b")):
        with pytest.raises(SystemExit) as exit_:
            main(["experiment", "mad-loops", "--scale", "smoke", "--quiet", "--out", str(tmp_path / out), *how])
        assert exit_.value.code == 0
    a, b = (json.loads((tmp_path / o / "settings.json").read_text())["settings"] for o in "ab")
    assert a == b and a["seeds"] == 30 and a["loop"]["gens"] == 5 and a["tail"] == 2
    assert (tmp_path / "a" / "measurements.csv").read_text() == (tmp_path / "b" / "measurements.csv").read_text()
