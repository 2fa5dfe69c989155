"""--save-samples and `madlab samples`: the saved samples are the ones the run measured, the
command draws them (or recomputes one seed alone), and a run without them is one line, exit 2."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.distances import frechet_to_gaussian
from analysis.tails import mahalanobis_radius, outlier_share
from madlab import samples as saved
from madlab.cli import main
from madlab.config import ConfigError, RunConfig
from madlab.runner import regenerate_samples
from toy.targets import paper_gaussian

# the closed-form Gaussian fit sampling N(mu, 4 Sigma): about 4 % of its samples lie beyond
# p_r's Mahalanobis radius 5 (radius 2.5 of the widened Gaussian), so the tails show
RUN = ["run", "--backend", "gaussian", "--algo", "standard", "--sampling-bias", "4", "--loop", "fully-synthetic", "--n-real", "12", "--n-synth", "12",
       "--gens", "4", "--seeds", "3", "--first-seed", "5", "--n-eval", "400", "--metric", "fd",
       "--seed-chunk", "2", "--quiet"]


def cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("samples") / "run"
    with pytest.raises(SystemExit) as exit_:
        main([*RUN, "--save-samples", "--out", str(out)])
    assert exit_.value.code == 0
    return out


def test_the_saved_samples_are_the_ones_the_run_measured(saved_run):
    frame = pd.read_parquet(saved_run / "results.parquet")
    target = paper_gaussian()
    files = sorted((saved_run / "samples").rglob("*.npz"))
    assert len(files) == 2 * 4                                   # 2 seed chunks x 4 generations
    for seed in (5, 6, 7):
        for t in (1, 4):
            x, _, _ = saved.load(saved_run, seed, t)
            assert x.shape == (400, 2) and x.dtype == np.float32
            row = frame[(frame.seed == seed) & (frame.generation == t)].set_index("metric")["value"]
            xs = torch.from_numpy(x)[None]
            assert float(frechet_to_gaussian(xs, target.mean, target.cov)[0]) == row["fd"]
            assert float(outlier_share(xs, target)[0]) == row["outlier_share"]


def test_saving_samples_changes_no_number_and_not_the_run_id(saved_run, tmp_path, capsys):
    code, _, err = cli([*RUN, "--out", str(tmp_path / "plain")], capsys)
    assert code == 0, err
    key = ["seed", "generation", "metric"]
    with_samples = pd.read_parquet(saved_run / "results.parquet").set_index(key)["value"].sort_index()
    without = pd.read_parquet(tmp_path / "plain" / "results.parquet").set_index(key)["value"].sort_index()
    pd.testing.assert_series_equal(with_samples, without, check_exact=True)
    assert not (tmp_path / "plain" / "samples").exists()
    assert RunConfig.from_flat(save_samples=True, samples_dir="/x").validate().run_id() == RunConfig().validate().run_id()


def test_madlab_samples_draws_a_png_and_says_what_is_far(saved_run, tmp_path, capsys):
    png = tmp_path / "s.png"
    code, out, err = cli(["samples", str(saved_run), "--seed", "6", "--generation", "1", "--out", str(png)], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    x, _, _ = saved.load(saved_run, 6, 1)
    far = int((mahalanobis_radius(torch.from_numpy(x), paper_gaussian()) > 5).sum())
    assert far > 0
    assert f"400 samples, {far} beyond Mahalanobis radius 5" in out
    assert f"largest |x| {np.linalg.norm(x, axis=1).max():.4g}" in out
    code, out, err = cli(["samples", str(saved_run), "--seed", "5", "--generation", "2"], capsys)
    assert code == 0, err
    assert (saved_run / "report" / "samples-seed5-gen2.png").exists()


def test_regenerating_one_seed_gives_the_saved_samples(saved_run):
    x, run, _ = saved.load(saved_run, 7, 3)
    again, run_again, _ = regenerate_samples(saved_run, 7, 3)
    assert run_again == run
    np.testing.assert_array_equal(again, x)      # bit for bit: a seed alone = the seed beside others


@pytest.mark.parametrize("args, message", [
    (["--seed", "5", "--generation", "2"], "holds no saved samples (run "),
    (["--seed", "99", "--generation", "2"], "ran no seed 99"),
    (["--seed", "5", "--generation", "9"], "generation must lie in 1..4"),
    (["--seed", "5", "--generation", "2", "--run", "nope"], "holds no run 'nope'"),
])
def test_without_saved_samples_it_is_one_line_that_says_how(tmp_path, capsys, args, message):
    code, _, err = cli([*RUN, "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    code, _, err = cli(["samples", str(tmp_path / "r"), *args], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    if "no saved samples" in message:
        assert "--save-samples" in err and "--regenerate" in err


def test_sample_options_are_checked():
    with pytest.raises(ConfigError, match="--samples-dir needs --save-samples"):
        RunConfig.from_flat(samples_dir="/tmp/x").validate()
    with pytest.raises(ConfigError, match="toy backends only"):
        RunConfig.from_flat(backend="edm", save_samples=True).validate()
    cfg = RunConfig.from_flat(backend="gaussian", save_samples=True).validate()
    with pytest.raises(ConfigError, match="needs a folder"):
        saved.sample_saver(cfg, [0])


def test_a_sweep_saves_each_configuration_apart_and_run_picks_one(tmp_path, capsys):
    out = tmp_path / "sweep"
    code, _, err = cli(["sweep", "--backend", "gaussian", "--algo", "standard", "--sampling-bias", "1,4", "--gens", "2", "--seeds", "2",
                        "--n-eval", "300", "--save-samples", "true", "--quiet", "--out", str(out)], capsys)
    assert code == 0, err
    code, _, err = cli(["samples", str(out), "--seed", "1", "--generation", "1"], capsys)
    assert code == 2 and "holds 2 configurations with seed 1; pick one with --run" in err
    frame = pd.read_parquet(out / "results.parquet")
    shares = {}
    for run, part in frame.groupby("run"):
        code, printed, err = cli(["samples", str(out), "--seed", "1", "--generation", "1", "--run", run,
                                  "--out", str(tmp_path / f"{run}.png")], capsys)
        assert code == 0, err
        x, _, _ = saved.load(out, 1, 1, run)
        share = part[(part.metric == "outlier_share") & (part.seed == 1) & (part.generation == 1)]["value"].item()
        assert float(outlier_share(torch.from_numpy(x)[None], paper_gaussian())[0]) == share
        shares[part["sampling_bias"].iloc[0]] = share
    assert shares[4.0] > shares[1.0]                                # the widened sampler's tail
