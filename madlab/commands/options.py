"""Command-line options (click): the run options generated from the config tree
(madlab.config.OPTIONS), an experiment's settings as flags, and a command whose --help lists its
options by panel.

`madlab run` takes one value per option, `madlab sweep` a comma-separated list; both come from
this one loop over the declarations, grouped in --help by the component that declares them. The
flag is the option's flat name with dashes (`--n-synth`, `--edm-lr`, `--T`), and the value
reaches the command's callback under the flat name (click passes every parameter by name).

Only click's public API: `click.Option` built from each declaration, `click.Command` with a
`format_options` that groups them.
"""
from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import click

from loops.options import Spec
from madlab.config import OPTIONS

Mode = Literal["run", "sweep"]
OWN_PANEL = "Options"
TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}
TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOL", list: "LIST"}


class Option(click.Option):
    """A click option that knows the --help section (panel) it is listed under."""

    def __init__(self, decls: Sequence[str], *, panel: str | None = None, **attrs: Any):
        super().__init__(list(decls), **attrs)
        self.panel = panel


def option(*decls: str, panel: str | None = None, **attrs: Any) -> Option:
    """A hand-written option: click.Option's arguments, plus its panel."""
    return Option(decls, panel=panel, **attrs)


class Argument(click.Argument):
    """A click argument with a help line (click lists only options)."""

    def __init__(self, decls: Sequence[str], *, help: str = "", **attrs: Any):
        super().__init__(list(decls), **attrs)
        self.help = help

    def get_help_record(self, ctx: click.Context) -> tuple[str, str]:
        return self.human_readable_name, self.help + ("  [required]" if self.required else "")


def argument(*decls: str, help: str = "", **attrs: Any) -> Argument:
    return Argument(decls, help=help, **attrs)


def shown(value: Any) -> str:
    """A default as a user types it."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "auto"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return "''" if value == "" else f"{value:g}" if isinstance(value, float) else str(value)


def help_text(spec: Spec, mode: Mode) -> str:
    text = spec.help
    if spec.choices and (mode == "sweep" or spec.kind is list):   # run shows them as the metavar
        text += f" Choices: {', '.join(spec.choices)}."
    if mode == "sweep":
        if spec.kind is list:
            text += " One value: the whole comma-separated list."
        if spec.default is not None:   # None: resolved by validate(), the help says how
            text += f" [run default: {shown(spec.default)}]"
    return text


def off_switch(spec: Spec) -> str:
    """The flag that turns a bool option off (--from-scratch, --no-tails)."""
    return "--" + (spec.negative or "no-" + spec.flat.replace("_", "-"))


def config_option(spec: Spec, mode: Mode) -> Option:
    """One option as a click option: typed with its default (run) or a comma list (sweep)."""
    common = dict(help=help_text(spec, mode), panel=spec.panel)
    if mode == "sweep":
        return Option([spec.flag, spec.flat], metavar=f"{TYPE_NAMES[spec.kind]},...", default=None,
                      show_default=False, **common)
    if spec.kind is bool:
        return Option([f"{spec.flag}/{off_switch(spec)}", spec.flat], default=spec.default,
                      show_default=True, **common)
    if spec.kind is list:
        return Option([spec.flag, spec.flat], metavar="A,B,...", default=",".join(spec.default),
                      show_default=False, **common)
    metavar = f"[{'|'.join(spec.choices)}]" if spec.choices else None
    return Option([spec.flag, spec.flat], type=TYPES[spec.kind], metavar=metavar, default=spec.default,
                  show_default=spec.default not in ("", None), **common)


def config_options(mode: Mode) -> list[Option]:
    """One option per config option, in declaration order; their values reach the command's
    callback by flat name."""
    return [config_option(spec, mode) for spec in OPTIONS]


def setting_option(spec: Spec, defaults: Mapping[str, Any]) -> Option:
    """An experiment's setting as a flag (madlab.commands.experiment): read by the setting's type
    as --set reads it (loops.options.parse), shown with its value at each --scale (`defaults`):
    the quick one, then the others where they differ."""
    text = spec.help + (f" Choices: {', '.join(spec.choices)}." if spec.choices and spec.kind is list else "")
    quick = defaults.get("quick")
    if quick not in (None, "") or any(v != quick for v in defaults.values()):
        others = [f"{scale}: {shown(v)}" for scale, v in defaults.items() if scale != "quick" and v != quick]
        text += f"  [default: {shown(quick)}{'; ' + ', '.join(others) if others else ''}]"
    if spec.kind is bool:
        return Option([f"{spec.flag}/{off_switch(spec)}", spec.flat], default=None, help=text, panel=spec.panel)
    metavar = ("A,B,..." if spec.kind is list else f"[{'|'.join(spec.choices)}]" if spec.choices
               else TYPE_NAMES[spec.kind])
    return Option([spec.flag, spec.flat], metavar=metavar, default=None, help=text, panel=spec.panel)


SUBCOMMAND = "COMMAND [ARGS]..."   # a group's usage, spelled out: click 8.5 brackets it when the group runs bare


class GroupedCommand(click.Command):
    """A command whose --help lists its options in one section per panel (the component that
    declares them), in order of first appearance; arguments and options without a panel under
    "Arguments" and "Options"."""

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Nothing: the arguments are listed by format_options (click 8.5 would add a
        "Positional arguments" section of its own; older versions have no such step)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                default = "Arguments" if isinstance(param, click.Argument) else OWN_PANEL
                sections.setdefault(getattr(param, "panel", None) or default, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)


def command(name: str, callback, params: Sequence[click.Parameter], **attrs: Any) -> GroupedCommand:
    """A grouped command whose help is the callback's docstring."""
    return GroupedCommand(name, callback=callback, params=list(params), help=callback.__doc__, **attrs)
