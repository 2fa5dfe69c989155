"""The documentation that is generated or promised stays true: docs/cli.md is the current `--help`
(regenerate with `python docs/make_cli.py`), the README's test command is the one `.ci/run` runs,
and the README stays a newcomer's page (at most 20 kB; the rest lives in docs/)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make_cli():
    spec = importlib.util.spec_from_file_location("make_cli", ROOT / "docs" / "make_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_the_current_help():
    make_cli = _make_cli()
    page = make_cli.render()
    for command in ("run", "sweep", "report", "status", "samples", "experiment"):
        assert f"## madlab {command}\n" in page
    assert (ROOT / "docs" / "cli.md").read_text() == page, \
        "docs/cli.md is out of date: run `python docs/make_cli.py`"


def test_subcommands_are_read_from_the_commands_heading():
    text = "Usage: madlab [OPTIONS]\n\nOptions:\n  --help  Show.\n\nCommands:\n  run     Run one...\n  sweep   Grid.\n"
    assert _make_cli().subcommands(text) == ["run", "sweep"]


def test_readme_test_command_is_what_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    assert ci[-1] == "python -m pytest -q"
    assert any(block.strip() == ci[-1] for block in blocks), "README has no block running exactly the CI test command"



def test_readme_fits_a_newcomer():
    assert len((ROOT / "README.md").read_bytes()) <= 20_000
