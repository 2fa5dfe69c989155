"""`madlab run` as a user runs it: a run directory, a summary, clear errors, no overwrites."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from madlab.cli import main

TINY = ["--gens", "2", "--seeds", "3", "--n-real", "64", "--n-synth", "16", "--n-aux", "64",
        "--n-eval", "64", "--epochs", "2", "--aux-epochs", "1", "--T", "10", "--width", "16",
        "--depth", "1", "--batch-size", "32", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def madlab(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "madlab", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    result = madlab("run", *TINY, "--metric", "w2,fd", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_writes_config_and_one_tidy_table(finished_run):
    out, result = finished_run
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 3 * 2 * 5                          # seeds x generations x metrics
    assert list(dict.fromkeys(frame["metric"])) == ["w2", "fd", "outlier_share", "w2_inlier", "fd_inlier"]
    assert {"seed", "generation", "value", "loop", "algo", "omega", "n_synth"} <= set(frame.columns)
    assert (frame.loc[frame["metric"].isin(["w2", "fd"]), "value"] > 0).all()
    share = frame.loc[frame["metric"] == "outlier_share", "value"]
    assert ((share >= 0) & (share <= 1)).all()
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["loop"]["kind"] == "augment" and config["algo"] == {"name": "sims", "omega": 3.0,
                                                                     "n_aux": 64, "aux_epochs": 1.0}
    assert config["loop"]["gens"] == 2 and config["seeds"] == 3
    assert config["toy_ddpm"]["width"] == 16 and "edm" not in config and "gaussian" not in config
    assert "dataset" not in frame.columns and "estimator" not in frame.columns   # the active backend's only
    assert "E[dist(G^1)]" in result.stdout and "ratio" in result.stdout
    from madlab.cores import describe, layout
    processes, threads, chunk = layout(3)                    # every usable core, one chunk each
    tasks = -(-3 // chunk)
    assert (f"plan: {tasks} task{'s' * (tasks != 1)} (1 configuration x {tasks} seed chunk"
            f"{'s' * (tasks != 1)}), 6 seed-generations to run") in result.stderr
    assert describe(processes, threads) in result.stderr


def test_rerunning_the_same_command_redoes_nothing(finished_run):
    out, _ = finished_run
    before = (out / "results.parquet").stat().st_mtime_ns
    again = madlab("run", *TINY, "--metric", "w2,fd", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "nothing to redo" in again.stderr
    assert (out / "results.parquet").stat().st_mtime_ns == before


def test_a_different_run_in_the_same_directory_is_refused(finished_run):
    out, _ = finished_run
    def snapshot():
        return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    files = snapshot()
    result = madlab("run", *TINY, "--omega", "1", "--out", str(out))
    assert result.returncode == 2
    assert "different run" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot() == files


@pytest.mark.parametrize("args, says", [
    (["--loop", "sideways"], "--loop"),
    (["--algo", "magic"], "--algo"),
    (["--backend", "gan"], "--backend"),
    (["--target", "moon"], "--target"),
    (["--time-embedding", "fourier"], "choose one of scaled, raw, sinusoidal"),
    (["--T", "2.5"], "--T"),
    (["--omega", "strong"], "--omega"),
    (["--gens", "0"], "gens must be positive"),
    (["--seeds", "-3"], "seeds must be positive"),
    (["--n-synth", "0"], "n-synth must be positive"),
    (["--n-real", "-1"], "n-real must be positive"),
    (["--metric", "kl"], "unknown metric"),
    (["--epochs", "0"], "epochs must be positive"),
])
def test_bad_input_is_one_line_and_exit_two(tmp_path, capsys, args, says):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_:
        main(["run", *args, "--out", str(out)])       # in-process: the console script's entry
    assert exit_.value.code == 2
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize("command", [["run"], ["sweep", "--omega", "0,1"],
                                     ["experiment", "shift", "--scale", "smoke"]])
@pytest.mark.parametrize("variable, value, says", [
    ("MADLAB_OT_JOBS", "x", "MADLAB_OT_JOBS must be a positive integer"),
    ("MADLAB_KERNELS", "fast", "MADLAB_KERNELS must be one of"),
])
def test_bad_environment_is_one_line_and_exit_two_before_any_work(tmp_path, capsys, monkeypatch,
                                                                   command, variable, value, says):
    monkeypatch.setenv(variable, value)
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--out", str(out)])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert not out.exists()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    result = capsys.readouterr()
    for flag in ["--loop", "--algo", "--omega", "--gens", "--seeds", "--first-seed", "--n-real",
                 "--n-synth", "--n-aux", "--aux-epochs", "--epochs", "--backend", "--target",
                 "--metric", "--n-eval", "--device", "--out", "fully-synthetic", "accumulate",
                 "sims-param", "--jobs", "--threads"]:
        assert flag in result.out, flag


def test_ot_threads_default_to_torchs_thread_count(monkeypatch):
    import torch

    from madlab.runner import ot_jobs
    monkeypatch.delenv("MADLAB_OT_JOBS", raising=False)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        assert ot_jobs() == 3
        monkeypatch.setenv("MADLAB_OT_JOBS", "5")
        assert ot_jobs() == 5
    finally:
        torch.set_num_threads(previous)
