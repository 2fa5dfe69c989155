"""The run options as command-line options, generated from the config tree (madlab.config.OPTIONS).

`madlab run` takes one value per option, `madlab sweep` a comma-separated list; both come from
this one loop over the declarations, grouped in --help by the component that declares them. The
flag is the option's flat name with dashes (`--n-synth`, `--edm-lr`, `--T`).

typer reads a command's options from its function's signature, so `config_options` appends one
parameter per option to the signature of the decorated function (whose own parameters, such as
--out, come first) and hands the values to it in its **options.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Literal, Optional

import typer
from typing_extensions import Annotated

from loops.options import Spec
from madlab.config import OPTIONS

Mode = Literal["run", "sweep"]
OWN_PANEL = "Options"
TYPE_NAMES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOL", list: "LIST"}


def shown(value: Any) -> str:
    """A default as a user types it."""
    if isinstance(value, list):
        return ",".join(value) or "auto"
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


def parameter(spec: Spec, mode: Mode) -> inspect.Parameter:
    """One option as a typer parameter: typed with its default (run) or a comma list (sweep)."""
    common = dict(help=help_text(spec, mode), rich_help_panel=spec.panel)
    if mode == "sweep":
        info = typer.Option(spec.flag, metavar=f"{TYPE_NAMES[spec.kind]},...", show_default=False, **common)
        annotation, default = Optional[str], None
    elif spec.kind is bool:
        off = "--" + (spec.negative or "no-" + spec.flat.replace("_", "-"))
        info = typer.Option(f"{spec.flag}/{off}", **common)
        annotation, default = bool, spec.default
    elif spec.kind is list:
        info = typer.Option(spec.flag, metavar="A,B,...", show_default=False, **common)
        annotation, default = str, ",".join(spec.default)
    else:
        metavar = f"[{'|'.join(spec.choices)}]" if spec.choices else None
        info = typer.Option(spec.flag, metavar=metavar, show_default=spec.default != "", **common)
        annotation, default = spec.kind, spec.default
    return inspect.Parameter(spec.flat, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, info])


def is_argument(p: inspect.Parameter) -> bool:
    return any(isinstance(m, typer.models.ArgumentInfo) for m in getattr(p.annotation, "__metadata__", ()))


def config_options(mode: Mode, own_first: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: one option per config option beside the function's own parameters (after its
    arguments; its own options first or last in --help); the options' values reach the function
    in its **options, by flat name."""
    def decorate(func: Callable) -> Callable:
        own = inspect.signature(func, eval_str=True)
        fixed = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [parameter(spec, mode) for spec in OPTIONS if spec.flat not in {p.name for p in fixed}]
        arguments = [p for p in fixed if is_argument(p)]
        flags = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed if not is_argument(p)]
        ordered = arguments + (flags + generated if own_first else generated + flags)
        func.__signature__ = own.replace(parameters=ordered)
        return func

    return decorate


class GroupedCommand(typer.core.TyperCommand):
    """A command whose --help lists its options in one section per panel (the component that
    declares them), in order of first appearance: plain text, no rich rendering."""

    def format_options(self, ctx, formatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                default = "Arguments" if param.param_type_name == "argument" else OWN_PANEL
                sections.setdefault(getattr(param, "rich_help_panel", None) or default, []).append(record)
        for title, rows in sections.items():
            with formatter.section(title):
                formatter.write_dl(rows)
