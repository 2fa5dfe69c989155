"""Both notebooks run top to bottom (nbclient) on the small results set shipped in tests/data."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


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
def test_figure5_notebook(monkeypatch):
    nb = execute("figure5.ipynb", {"MADLAB_RESULTS": str(DATA / "small_sweep"), "MADLAB_BOOT": "100"},
                 monkeypatch)
    assert len(outputs(nb, "image/png")) >= 2       # the Figure 5 panels and the generation curves
    text = text_of(nb)
    assert "6 configurations, generations 1..6" in text
    assert "prophylactic threshold" in text


@pytest.mark.slow
def test_explore_run_notebook(monkeypatch):
    nb = execute("explore_run.ipynb", {"MADLAB_RUN": str(DATA / "small_run")}, monkeypatch)
    assert len(outputs(nb, "image/png")) >= 1
    assert "4 seeds x 8 generations" in text_of(nb)
