"""The `madlab` command line (click). Sub-commands live in `madlab.commands`.

Start-up imports only click, rich and the torch-free option schema (`madlab.config`); each
command imports torch, pandas and POT in its body, so `madlab --help` is fast
(benchmarks/cli_start.py)."""
from __future__ import annotations

import signal
import sys

import click

from madlab import __version__
from madlab.commands.options import SUBCOMMAND
from madlab.config import ConfigError


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        print(f"madlab {__version__}")
        ctx.exit()


@click.group(name="madlab", invoke_without_command=True, subcommand_metavar=SUBCOMMAND)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Print madlab's version and exit.")
@click.pass_context
def app(ctx: click.Context) -> None:
    """Simulate self-consuming training loops of generative models, and SIMS against MAD."""
    if ctx.invoked_subcommand is None:     # bare `madlab`: the help
        click.echo(ctx.get_help())


def _register_commands() -> None:
    """Every module in madlab.commands with a `register(app)` adds its sub-command(s)."""
    import importlib
    import pkgutil

    import madlab.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"madlab.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(app)


_register_commands()


def fail(message: str) -> None:
    """One line on stderr, exit status 2."""
    print(f"madlab: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input is one line on stderr and exit status 2, an environment
    failure (a file that cannot be written or read) one line naming the path and exit status 1,
    a stop signal (Ctrl-C, SIGTERM) one line and 128 + its number; never a traceback."""
    from madlab import interrupt, provenance

    provenance.COMMAND = ["madlab", *(sys.argv[1:] if argv is None else argv)]
    handlers = {s: signal.getsignal(s) for s in interrupt.SIGNALS}
    interrupt.install()
    try:
        check_utf8(sys.argv[1:] if argv is None else argv)
        code = app.main(args=argv, prog_name="madlab", standalone_mode=False)
    except ConfigError as err:
        fail(str(err))
    except click.ClickException as err:      # bad usage: unknown option, bad value, missing argument
        fail(err.format_message())
    except click.Abort:
        print("madlab: interrupted", file=sys.stderr)
        raise SystemExit(130)
    except (KeyboardInterrupt, interrupt.Interrupted) as err:
        print("madlab: interrupted", file=sys.stderr)
        raise SystemExit(interrupt.as_interrupted(err).code)
    except OSError as err:
        fail_environment(err)
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
    raise SystemExit(code if isinstance(code, int) else 0)


def check_utf8(args: list[str]) -> None:
    """Refuse (one line, before anything runs) an argument with bytes that are not UTF-8 (Python
    hands them over as surrogates): Parquet and JSON files cannot name such a path, so a run
    there would fail after its work was done."""
    for arg in args:
        if any("\udc80" <= ch <= "\udcff" for ch in str(arg)):
            shown = str(arg).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise ConfigError(f"'{shown}' is not UTF-8 text; madlab's paths and values must be UTF-8 "
                              "(rename the folder or choose another)")


def fail_environment(err: OSError) -> None:
    """One line naming the file, exit status 1."""
    where = f"{err.filename}: " if getattr(err, "filename", None) and str(err.filename) not in str(err.strerror) else ""
    text = err.strerror if err.strerror else str(err)
    print(f"madlab: error: {where}{text}", file=sys.stderr)
    raise SystemExit(1)
