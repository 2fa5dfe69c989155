"""The benchmark harness (benchmarks/harness.py) knows every benchmark by name, gives each the shared
arguments it declares, and --tiny only sets options the benchmark has. (The benchmarks themselves
are run by hand, `python -m benchmarks NAME --tiny`; the GPU check at toy size by test_gpu_check.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import harness

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"ab_run": ["HEAD"], "gpu_check": ["--out", "o"]}   # what a benchmark requires


def test_the_harness_lists_every_benchmark_and_no_other_script():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} | {"gpu_check"}
    helpers = {"__init__", "__main__", "harness", "peer"}
    assert set(harness.BENCHMARKS) == scripts - helpers
    listing = subprocess.run([sys.executable, "-m", "benchmarks"], cwd=ROOT, capture_output=True,
                             text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""}).stdout
    assert all(f"  {name} " in listing for name in harness.BENCHMARKS)


@pytest.mark.parametrize("name", harness.BENCHMARKS)
def test_each_benchmark_parses_its_shared_and_tiny_arguments(name):
    module, args = harness.parse(name, MINIMAL.get(name, []))
    for key, default in getattr(module, "SHARED", {}).items():
        assert getattr(args, key) == default, key
    _, tiny = harness.parse(name, MINIMAL.get(name, []) + ["--tiny"])
    assert tiny.tiny and set(vars(tiny)) == set(vars(args))     # --tiny adds no unknown option
    for key, value in getattr(module, "TINY", {}).items():
        assert getattr(tiny, key) == value, key


def test_an_unknown_benchmark_is_a_one_line_error(capsys):
    assert harness.main(["nope"]) == 2
    assert "unknown benchmark 'nope'; choose one of throughput" in capsys.readouterr().err


def test_a_size_list_is_parsed_and_checked():
    assert harness.counts("16,64") == [16, 64] and harness.counts("") == []
    _, args = harness.parse("ot_solvers", ["--seeds", "2,8"])
    assert args.seeds == [2, 8]
    with pytest.raises(SystemExit):
        harness.parse("throughput", ["--seeds", "2,8"])     # one N there
