"""--wandb PROJECT: offline W&B runs of `madlab run` and `madlab sweep`, read back from their files."""
import struct
import sys

import pandas as pd
import pytest

from madlab import tracking
from madlab.cli import main

SMALL = ["--backend", "gaussian", "--gens", "3", "--seeds", "3", "--n-real", "20", "--n-synth", "10",
         "--n-eval", "30", "--metric", "fd", "--n-aux", "20", "--quiet", "--jobs", "1"]


def records(path):
    """The protobuf records of a .wandb file (W&B's LevelDB-style log: 7-byte file header, 32 KiB
    blocks, each record chunk with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, pos, block, out, partial = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        data, pos = raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            out.append(partial + data if kind == 4 else data)
        partial = data if kind == 2 else partial + data if kind == 3 else b""
    for data in out:
        record = pb.Record()
        record.ParseFromString(data)
        yield record


def offline_runs(folder):
    """{run display name: {"group", "project", "config": {key: json}, "history": [{key: json}]}}."""
    runs = {}
    for path in sorted(folder.glob("wandb/offline-run-*/run-*.wandb")):
        run = {"history": []}
        for r in records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run |= {"name": r.run.display_name, "group": r.run.run_group, "project": r.run.project,
                        "config": {i.key: i.value_json for i in r.run.config.update}}
            elif kind == "history":
                run["history"].append({i.key or "/".join(i.nested_key): i.value_json for i in r.history.item})
        runs[run["name"]] = run
    return runs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    return tmp_path


def cli(*args):
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


def test_an_offline_run_logs_its_config_provenance_and_aggregates(offline):
    out = offline / "r"
    assert cli("run", *SMALL, "--algo", "standard", "--out", str(out), "--wandb", "proj") == 0
    frame = pd.read_parquet(out / "results.parquet")
    runs = offline_runs(offline)
    (run,) = runs.values()
    assert run["name"] == frame["run"].iloc[0] and run["group"] == "r" and run["project"] == "proj"
    assert run["config"]["algo"] == '"standard"' and run["config"]["seeds"] == "3"
    assert '"madlab run' in run["config"]["provenance"] and '"commit"' in run["config"]["provenance"]
    steps = {int(h["generation"]): h for h in run["history"]}
    assert sorted(steps) == [1, 2, 3]
    for t, step in steps.items():
        fd = frame[(frame["metric"] == "fd") & (frame["generation"] == t)]["value"]
        assert float(step["fd/mean"]) == pytest.approx(fd.mean(), rel=1e-12)
        assert float(step["fd/median"]) == pytest.approx(fd.median(), rel=1e-12)
        assert float(step["fd/p05"]) <= float(step["fd/median"]) <= float(step["fd/p95"])
        assert "outlier_share/mean" in step


def test_an_offline_sweep_logs_one_run_per_configuration_grouped_by_the_sweep(offline):
    out = offline / "s"
    assert cli("sweep", *SMALL, "--algo", "standard,sims-param", "--out", str(out), "--wandb", "proj") == 0
    frame = pd.read_parquet(out / "results.parquet")
    runs = offline_runs(offline)
    assert set(runs) == set(frame["run"]) and len(runs) == 2
    assert {r["group"] for r in runs.values()} == {"s"}
    assert {r["config"]["algo"] for r in runs.values()} == {'"standard"', '"sims-param"'}


def test_without_wandb_the_option_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)          # import wandb -> ImportError
    for command in (["run", "--algo", "standard"], ["sweep"]):
        assert cli(*command, *SMALL, "--out", str(tmp_path / "x"), "--wandb", "proj") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'madlab[wandb]'" in err
    assert not (tmp_path / "x").exists()                      # refused before any work


def test_a_wandb_failure_is_a_warning_not_a_failed_run(tmp_path, monkeypatch, capsys):
    def broken(*args, **kw):
        raise ConnectionError("api.wandb.ai unreachable")

    monkeypatch.setattr(tracking, "_log", broken)
    assert tracking.log_directory("proj", tmp_path) == 0
    assert "W&B logging failed (ConnectionError" in capsys.readouterr().err
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "r"
    assert cli("run", *SMALL, "--algo", "standard", "--out", str(out), "--wandb", "proj") == 0
    assert (out / "results.parquet").exists()
