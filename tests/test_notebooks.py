"""Both notebooks run top to bottom (nbclient) on the README's example sweep (closed-form Gaussian,
fd only, two loop kinds) and on a w2 run, and say what `madlab report` says."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.report import analyse
from madlab import presets
from madlab.commands.report import load
from madlab.executors import LocalExecutor
from madlab.sweep import open_sweep, run_sweep

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="module")
def example_sweep(tmp_path_factory):
    """`madlab sweep --preset example` as the README runs it (in this process: a few seconds)."""
    out = tmp_path_factory.mktemp("example")
    spec = presets.load("example")
    counts = run_sweep(out, open_sweep(out, spec, spec.tasks()), LocalExecutor(jobs=1))
    assert counts["failed"] == 0 and counts["done"] == 24
    return out


def execute(name: str, env: dict, monkeypatch) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return nb


def outputs(nb, kind: str) -> list:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
            if kind in o.get("data", {})]


def text_of(nb) -> str:
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(o.get("text", "") + o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.slow
def test_figure5_notebook_on_the_example_sweep(example_sweep, monkeypatch):
    nb = execute("figure5.ipynb", {"MADLAB_RESULTS": str(example_sweep), "MADLAB_BOOT": "100"}, monkeypatch)
    text = text_of(nb)
    report = analyse(load(example_sweep), n_boot=100)
    assert report.metric == "fd" and report.family == ["loop"]
    for line in report.summary():                     # the report's own words, metric and window included
        assert line in text, line
    assert len(outputs(nb, "image/png")) == 4         # figure5 and generations for each loop kind
    assert "paper: about" not in text                 # the closed-form example is not the paper's Figure 5


@pytest.mark.slow
def test_figure5_notebook_on_a_w2_sweep(monkeypatch):
    nb = execute("figure5.ipynb", {"MADLAB_RESULTS": str(DATA / "small_sweep"), "MADLAB_BOOT": "100"},
                 monkeypatch)
    text = text_of(nb)
    assert "6 configurations, generations 1..6" in text and "dist = w2; window t = 3..6" in text
    assert len(outputs(nb, "image/png")) == 2 and "prophylactic threshold" in text


@pytest.mark.slow
def test_explore_run_notebook_on_a_w2_run(monkeypatch):
    nb = execute("explore_run.ipynb", {"MADLAB_RUN": str(DATA / "small_run")}, monkeypatch)
    text = text_of(nb)
    assert "4 seeds x 8 generations" in text and "dist = w2; window t = 4..8" in text
    assert len(outputs(nb, "image/png")) >= 3         # seeds and mean, figure5, generations


@pytest.mark.slow
def test_explore_run_notebook_on_one_configuration_of_the_example_sweep(example_sweep, monkeypatch):
    nb = execute("explore_run.ipynb", {"MADLAB_RUN": str(example_sweep)}, monkeypatch)
    text = text_of(nb)
    assert "holds 12 configurations; exploring run" in text and "dist = fd" in text
    assert "16 seeds x 25 generations" in text
