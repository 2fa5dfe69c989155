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
