"""Start-up: `madlab --help` and the commands' help load no heavy library; `madlab --version`."""
import subprocess
import sys

import pytest

from madlab.cli import main


def test_help_does_not_import_torch_or_pandas():
    code = ("import sys\nfrom madlab.cli import main\n"
            "for cmd in (['--help'], ['run', '--help'], ['sweep', '--help']):\n"
            "    try:\n        main(cmd)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'pandas', 'ot', 'scipy', 'matplotlib') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300).stdout
    assert "HEAVY []" in out, out[-300:]


def test_version(capsys):
    from madlab import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"madlab {__version__}"


def test_the_command_line_uses_click_public_api_only():
    """No typer, no signature rewriting, nothing private of click (issue 23)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "madlab"
    for path in [root / "cli.py", *sorted((root / "commands").glob("*.py"))]:
        text = path.read_text()
        assert "typer" not in text and "__signature__" not in text, path.name
        assert not re.search(r"\bclick\.(_\w+|\w+\._\w+)", text), path.name
        assert not re.search(r"from click\.\S* import|import click\.", text), path.name
