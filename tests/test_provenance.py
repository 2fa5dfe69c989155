"""Provenance: config.json, sweep.json and every task file say which code, libraries, machine and
command produced them; status and report print it; a resume under other code is warned about; the
JSON files are strict JSON."""
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import pyarrow.parquet as pq
import pytest

from madlab import __version__, store
from madlab.config import RunConfig
from madlab.provenance import git_state
from madlab.sweep import SweepSpec, chunk_tasks, open_sweep

KEYS = {"madlab", "git", "torch", "numpy", "pot", "python", "device", "host", "command", "started"}
GAUSS = ["--backend", "gaussian", "--gens", "3", "--seeds", "2", "--n-real", "30", "--n-eval", "40", "--quiet"]


def madlab(*args):
    from madlab.cli import main

    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            assert exit_.code == 0, err.getvalue()
    return " ".join(out.getvalue().split()), " ".join(err.getvalue().split())


def strict(path):
    """The file as JSON, refusing NaN and Infinity tokens."""
    def refuse(token):
        raise ValueError(f"{path} holds {token}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_every_file_of_a_run_says_what_made_it(tmp_path):
    out = tmp_path / "run"
    madlab("run", *GAUSS, "--out", out)
    config, manifest = strict(out / "config.json"), strict(out / "sweep.json")
    (session,) = manifest["sessions"]
    assert KEYS <= set(config["provenance"]) and KEYS | {"ended", "outcome"} <= set(session)
    assert session["outcome"] == "done" and session["ended"] >= session["started"]
    assert session["madlab"] == __version__ and session["command"].startswith("madlab run --backend gaussian")
    assert session["device"].startswith("cpu") and session["host"] == os.uname().nodename
    assert session["git"] == git_state()                         # this checkout's commit and dirty flag
    task_files = list((out / "tasks").glob("*.parquet"))        # one per core's chunk of seeds
    assert task_files
    for task_file in task_files:
        task = json.loads(pq.read_schema(task_file).metadata[store.PROVENANCE_KEY])
        assert KEYS | {"ended", "resumed_after_generation"} <= set(task) and task["resumed_after_generation"] == 0
    assert store.PROVENANCE_KEY not in (pq.read_schema(out / "results.parquet").metadata or {})
    status, _ = madlab("status", out)
    assert f"last run: madlab {__version__}" in status and "command: madlab run" in status
    report, _ = madlab("report", out, "--boot", "20", "--out", tmp_path / "report")
    assert f"provenance: madlab {__version__}" in report


def test_a_resume_under_other_code_is_warned_about(tmp_path):
    out = tmp_path / "s"
    madlab("sweep", *GAUSS, "--omega", "0,1", "--out", out)
    manifest = strict(out / "sweep.json")
    manifest["sessions"][-1]["git"] = {"commit": "0123456789abcdef", "dirty": False}
    store.write_manifest(out, manifest)
    _, err = madlab("sweep", *GAUSS, "--omega", "0,1", "--out", out)
    assert "warning: " in err and "was last run by madlab" in err and "(git 0123456)" in err
    _, err = madlab("sweep", *GAUSS, "--omega", "0,1", "--out", out)
    assert "warning" not in err                                  # the same code as the last session
    assert len(strict(out / "sweep.json")["sessions"]) == 3


def test_json_files_stay_strict_json_with_infinite_options(tmp_path):
    pytest.importorskip("sklearn")
    cfg = RunConfig.from_flat(backend="edm", dataset="digits", gens=2, seeds=1).validate()
    assert cfg.edm.guide_sigma_hi == float("inf")                # the default: guide at every noise level
    store.write_config(tmp_path, cfg)
    open_sweep(tmp_path, SweepSpec(name="e", base=cfg.flat()), chunk_tasks(cfg), kind="run")
    config, manifest = strict(tmp_path / "config.json"), strict(tmp_path / "sweep.json")
    assert config["config"]["edm"]["guide_sigma_hi"] == "inf"
    back = RunConfig.from_dict(config["config"]).validate()
    assert back.edm.guide_sigma_hi == float("inf") and back.run_id() == cfg.run_id()
    (task,) = manifest["tasks"]
    assert RunConfig.from_flat(task["config"]).validate().run_id() == cfg.run_id()
    assert store.check_run_dir(tmp_path, cfg) is False           # the same run: it resumes there
