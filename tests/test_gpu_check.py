"""The prepared GPU check (benchmarks/gpu_check/) runs at toy size on the CPU, so it cannot rot:
every part reports a status, a broken or hung part leaves the others, the summary has its shape."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check.agreement import bootstrap_se_median
from benchmarks.gpu_check.timing import default_experiment
from madlab.plan import extrapolate_figure5

ROOT = Path(__file__).resolve().parents[1]


def run_check(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "benchmarks", "gpu_check", "--out", str(out), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_tiny_cpu_run_reports_every_part(tmp_path):
    out = tmp_path / "out"
    proc = run_check(out, "--tiny", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["finished"]
    assert sorted(summary["parts"]) == ["a", "b", "c", "d", "e"]
    for key, part in summary["parts"].items():
        assert part["status"] == "ok", (key, part["error"], part.get("substep_errors"))
        assert part["results"].get("headline"), key
    md = (out / "summary.md").read_text()
    assert all(f"## {k}. " in md for k in "abcde") and md in proc.stdout
    # what the device tool brings back: at most 8 plain files, plain names, nothing nested
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert all((out / f).is_file() for f in files)
    e, a, b, c, d = (summary["parts"][k]["results"] for k in "eabcd")
    assert e["cpu_cores"] >= 1 and e["torch"] and e["source_digest"]
    assert a["skipped"] > 0 and a["failed"] == a["error"] == 0       # CUDA tests, no CUDA here
    assert "tests/test_rng.py" in a["files"] and "tests/test_transfers.py" in a["files"]
    assert b["main"]["steady"]["seed_gen_per_s"] > 0 and len(b["main"]["per_generation"]) == 2
    assert b["figure5_paper"]["seed_generations"] == 4_000_000 and b["figure5_paper"]["hours_w2"] > 0
    assert b["ot_solvers"]["auction_max_rel_diff"] < 1e-9
    assert d["rng_bits_equal"] and all(c["within"] for c in d["comparisons"])
    assert {c["metric"] for c in d["comparisons"]} >= {"w2", "fd"}   # and the tail metrics beside them
    assert sorted(c["fid_by_generation"]) == ["1", "2"]


def test_a_broken_and_a_hung_part_leave_the_rest(tmp_path):
    out = tmp_path / "out"
    proc = run_check(out, "--tiny", "--device", "cpu", "--parts", "a,c", "--budget-s", "12",
                     "--plant", "a:error,c:hang")
    assert proc.returncode == 1
    parts = json.loads((out / "summary.json").read_text())["parts"]
    assert parts["a"]["status"] == "error" and parts["a"]["error"] == "RuntimeError: planted error"
    assert parts["c"]["status"] == "timeout" and "budget" in parts["c"]["error"]
    assert parts["c"]["results"]["partial"] == "reported before the hang"       # kept
    assert parts["b"]["status"] == parts["d"]["status"] == parts["e"]["status"] == "skipped"
    assert "planted error" in (out / "tracebacks.txt").read_text()
    assert "timeout" in (out / "summary.md").read_text()


def test_bad_arguments_are_one_line_errors(capsys):
    for argv in (["--parts", "a,x", "--out", "o"], ["--device", "cpu"], ["--out", "o", "--budget-s", "0"]):
        with pytest.raises(SystemExit) as exit_:
            gpu_check.parse(argv)
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unknown parts ['x']" in err and "--out DIR is required" in err and "must be positive" in err


def test_figure5_extrapolation_adds_up_the_measured_calls():
    """Hand-made call times: base training 1.0 s at |D| = 1250, fine-tune 0.5, unguided aux
    sample 0.2, guided sampling 0.1 s at 250 and 0.4 s at 1000 points (0.0004 s per point),
    W2 2.0 s, fd 0 -> a steady SIMS generation at |D_s| = 250, w = 3 costs 1.0 + 0.7 + 0.1 + 0.4."""
    kw = default_experiment(gpu_check.parse(["--out", "o"]), 1000, 3)
    calls = {"train n=1250 epochs=100": 1.0, "train n=2000 epochs=50": 0.5, "sample n=2000": 0.2,
             "sample n=250 guided": 0.1, "sample n=1000 guided": 0.4, "metric w2": 2.0, "metric fd": 0.0}
    x = extrapolate_figure5(kw, 1000, calls, {})
    steady = {(c["n_synth"], c["omega"]): c["s_per_gen_steady_fd"] for c in x["per_configuration"]}
    assert steady[(250, 3.0)] == pytest.approx(2.2)
    # w = 0 samples unguided: 0.25 of guided (0.2 s measured against 0.8 s guided at 2000 points)
    assert steady[(250, 0.0)] == pytest.approx(1.0 + 0.7 + 0.25 * (0.1 + 0.4))
    # |D_s| = 1000: base training on 2000 rows, in proportion (no probes)
    assert steady[(1000, 3.0)] == pytest.approx(1.6 + 0.7 + 0.4 + 0.4)
    assert x["hours_w2"] - x["hours_fd"] == pytest.approx(40 * 100 * 2.0 / 3600)
    assert x["configurations"] == 40 and math.isfinite(x["hours_fd"])


def test_bootstrap_band_is_the_spread_of_the_median():
    assert bootstrap_se_median([1.0] * 10) == 0.0
    import numpy as np
    v = np.random.default_rng(1).normal(size=400)
    # the median of n normals has standard error about sqrt(pi / 2) / sqrt(n) = 0.063
    assert 0.04 < bootstrap_se_median(v) < 0.09
