"""Options declared once: a config field carries its default, help, choices and flat name.

Each component owns a dataclass of its options beside its code (`loops.config`, `toy.config`,
`madlab.edm.config`); `madlab.config.RunConfig` nests them. Everything user-facing is generated
from these declarations: the `madlab run` / `madlab sweep` options and their help, the flat names
that sweep files and results columns use, and the type and choice checks of `validate()`.
Torch-free on purpose, so that the command line starts without importing torch.

    @dataclass
    class DDPMConfig:
        PANEL: ClassVar[str] = "Toy DDPM"                    # --help group of these options
        width: int = option(64, help="Hidden units of the MLP.")

A field declared with plain `field()` or a bare default is internal (speed knobs, the device a
run sets): it is no option, no column and not part of the run id.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, Iterable, Sequence

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
NON_FINITE = ("inf", "-inf", "nan")   # float options written to JSON (madlab.store.to_json)


class ConfigError(ValueError):
    """Bad user input: reported as one line on stderr with exit code 2."""


def option(default: Any = MISSING, *, help: str, default_factory: Any = MISSING,
           choices: Sequence[str] = (), flat: str | None = None, negative: str | None = None,
           identity: bool = True, panel: str | None = None,
           branch: str | Sequence[str] | None = None, id_if_default: bool = True) -> Any:
    """A dataclass field that is a user-facing option.

    help      one sentence for --help (the only place it is written)
    choices   the allowed values: listed in --help, checked by validate()
    flat      the option's flat name if it is not the config's PREFIX + the field name; the flat
              name is the sweep key and results column, the flag is --flat with dashes
    negative  the off switch of a bool flag (default: no-<flag>)
    identity  False for options that change speed or where files go, never the numbers: they
              are not hashed into the run id and are no results column
    panel     --help group, for options of the root config (nested configs have PANEL)
    branch    the backend(s) the option belongs to; it is left out of runs of other backends
    id_if_default  False for an option added after results were recorded: at its default it is
              left out of the run id's hash (still a results column), so earlier runs keep their id
    """
    metadata = {"help": help, "choices": tuple(choices), "flat": flat, "negative": negative,
                "identity": identity, "panel": panel, "branch": _branch(branch),
                "id_if_default": id_if_default}
    return field(default=default, default_factory=default_factory, metadata=metadata)


def nested(cls: type, *, branch: str | Sequence[str] | None = None) -> Any:
    """A field holding a sub-config (its options join the tree); `branch`: only for those backends."""
    return field(default_factory=cls, metadata={"nested": True, "branch": _branch(branch)})


def _branch(branch) -> tuple[str, ...] | None:
    if branch is None:
        return None
    return (branch,) if isinstance(branch, str) else tuple(branch)


# ---------------------------------------------------------------------------------------------
# one option of the tree

@dataclass(frozen=True)
class Spec:
    """One option as the tree declares it."""

    flat: str                       # unique flat name: sweep key, results column, --flag
    path: tuple[str, ...]           # attribute path from the root config, e.g. ("toy_ddpm", "width")
    kind: type                      # int | float | str | bool | list (of str)
    default: Any
    help: str
    choices: tuple[str, ...]
    panel: str
    negative: str | None
    identity: bool
    branch: tuple[str, ...] | None  # backends it belongs to (None: every run)
    id_if_default: bool = True      # False: hashed into the run id only when not at its default
    item: type = str                # a list option's item type: str, int or float

    @property
    def flag(self) -> str:
        return "--" + self.flat.replace("_", "-")

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def label(self) -> str:
        """How messages name the option: the flag without dashes in front (n-synth, edm-lr)."""
        return self.flat.replace("_", "-")


def _kind(hint) -> tuple[type, type]:
    """(kind, item type) of a field's annotation: int, float, str, bool or a list of str, int or float."""
    if typing.get_origin(hint) is list and typing.get_args(hint)[0] in (str, int, float):
        return list, typing.get_args(hint)[0]
    if hint in (int, float, str, bool):
        return hint, str
    raise TypeError(f"an option must be int, float, str, bool or a list of str, int or float, not {hint!r}")


def flat_name(cls: type, f: dataclasses.Field) -> str:
    return f.metadata.get("flat") or getattr(cls, "PREFIX", "") + f.name


def is_option(f: dataclasses.Field) -> bool:
    return "help" in f.metadata


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def own_specs(cls: type) -> list[tuple[dataclasses.Field, Spec]]:
    """The options declared directly in `cls` (not in its sub-configs), path relative to it."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not is_option(f):
            continue
        m = f.metadata
        kind, item = _kind(hints[f.name])
        out.append((f, Spec(flat=flat_name(cls, f), path=(f.name,), kind=kind, item=item,
                            default=_default(f), help=m["help"], choices=m["choices"],
                            panel=m["panel"] or getattr(cls, "PANEL", "Options"),
                            negative=m["negative"], identity=m["identity"], branch=m["branch"],
                            id_if_default=m["id_if_default"])))
    return out


def specs(cls: type, path: tuple[str, ...] = (), branch: tuple[str, ...] | None = None) -> list[Spec]:
    """Every option of the config tree rooted at `cls`, in declaration order (depth first)."""
    out = []
    own = {f.name: spec for f, spec in own_specs(cls)}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in own:
            spec = own[f.name]
            out.append(dataclasses.replace(spec, path=path + spec.path, branch=spec.branch or branch))
        elif f.metadata.get("nested"):
            out += specs(hints[f.name], path + (f.name,), f.metadata["branch"] or branch)
    return out


def check_unique(all_specs: Iterable[Spec]) -> None:
    """Each flat name names one option (a developer error otherwise, raised at import)."""
    seen: dict[str, Spec] = {}
    for spec in all_specs:
        if spec.flat in seen:
            raise TypeError(f"options {seen[spec.flat].dotted} and {spec.dotted} share the flat "
                            f"name {spec.flat!r}; give one of them option(flat=...)")
        seen[spec.flat] = spec


# ---------------------------------------------------------------------------------------------
# values

def _describe(spec: Spec) -> str:
    if spec.kind is list:
        return {str: "a list of strings", int: "a list of integers", float: "a list of numbers"}[spec.item]
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[spec.kind]


HAS_KIND = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
            bool: lambda v: isinstance(v, bool),
            str: lambda v: isinstance(v, str)}


def check_value(spec: Spec, value: Any) -> Any:
    """`value` checked against option `spec`: its type (strictly: 3 is no bool, "3" no int, 2.5 no
    int) and its choices; returned with ints widened to floats for float options (so 50 and 50.0
    are one run). ConfigError naming the option otherwise."""
    kind = spec.kind
    if kind is list:
        ok = isinstance(value, (list, tuple)) and all(HAS_KIND[spec.item](x) for x in value)
    else:
        ok = HAS_KIND[kind](value)
    if not ok:
        raise ConfigError(f"{spec.label} must be {_describe(spec)}, got {value!r}")
    if kind is float:
        value = float(value)
        if math.isnan(value) or (math.isinf(value) and not math.isinf(spec.default)):
            raise ConfigError(f"{spec.label} must be a finite number, got {value!r}")
    if kind is list:
        value = [float(x) for x in value] if spec.item is float else list(value)
    for item in (value if kind is list else [value]):
        if spec.choices and item not in spec.choices:
            raise ConfigError(f"unknown {spec.label.replace('-', ' ')} {item!r} ({spec.flag}); "
                              f"choose one of {', '.join(spec.choices)}")
    return value


def check(config) -> None:
    """Check every option declared in `config` itself (check_value), normalising it in place.
    Sub-configs check themselves."""
    for f, spec in own_specs(type(config)):
        setattr(config, f.name, check_value(spec, getattr(config, f.name)))


def label(config, name: str) -> str:
    """How messages name option `name` of `config` (its flat name with dashes)."""
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    return flat_name(type(config), f).replace("_", "-")


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def positive(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value > 0, f"{label(config, name)} must be positive, got {value!r}")


def non_negative(config, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value >= 0, f"{label(config, name)} must be non-negative, got {value!r}")


def parse(spec: Spec, text: str) -> Any:
    """A command-line string as the option's type (ConfigError naming the flag if it is not)."""
    raw = str(text).strip()
    try:
        if spec.kind is bool:
            if raw.lower() in TRUE:
                return True
            if raw.lower() in FALSE:
                return False
            raise ValueError
        if spec.kind is int:
            return int(raw)
        if spec.kind is float:
            return float(raw)
        if spec.kind is list:
            items = [spec.item(s.strip()) for s in raw.split(",") if s.strip()]
            if not items:
                raise ValueError
            return items
        return raw
    except ValueError:
        pass
    raise ConfigError(f"{spec.flag}: {text!r} is not {_describe(spec)}")


def coerce(spec: Spec, value: Any) -> Any:
    """A typed value (from TOML or Python) in the option's canonical form: ints widen to floats
    for float options, a comma-separated string is a list for list options; anything else is kept
    as given, for validate() to accept or refuse."""
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if spec.kind is float and value in NON_FINITE:      # how strict JSON files write them
        return float(value)
    if spec.kind is list and isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if spec.kind is list and isinstance(value, tuple):
        return list(value)
    if spec.kind is list and spec.item is float and isinstance(value, list):
        return [float(x) if HAS_KIND[int](x) else x for x in value]
    return value


def lookup(key: str, all_specs: Sequence[Spec], what: str = "option",
           listed: str = "madlab run --help") -> Spec:
    """The option named `key`: its flat name (`n_synth`, `n-synth`) or its dotted path
    (`toy_ddpm.width`). ConfigError with the nearest names otherwise ("unknown {what} ...
    (every {what}: {listed})")."""
    by_flat = {s.flat: s for s in all_specs}
    by_path = {s.dotted: s for s in all_specs}
    name = str(key).strip()
    spec = by_flat.get(name.replace("-", "_")) or by_path.get(name)
    if spec is None:
        names = list(by_path) if "." in name else list(by_flat)
        near = difflib.get_close_matches(name.replace("-", "_"), names, n=3)
        hint = f"; did you mean {' or '.join(near)}?" if near else ""
        raise ConfigError(f"unknown {what} {key!r}{hint} (every {what}: {listed})")
    return spec


def get_path(root, path: Sequence[str]) -> Any:
    for name in path:
        root = getattr(root, name)
    return root


def set_path(root, path: Sequence[str], value: Any) -> None:
    for name in path[:-1]:
        root = getattr(root, name)
    setattr(root, path[-1], value)


def as_tree(root, chosen: Iterable[Spec]) -> dict[str, Any]:
    """The values of the `chosen` options of `root`, nested as the tree ({"loop": {"gens": 100}, ...})."""
    out: dict[str, Any] = {}
    for spec in chosen:
        part = out
        for name in spec.path[:-1]:
            part = part.setdefault(name, {})
        value = get_path(root, spec.path)
        part[spec.path[-1]] = list(value) if isinstance(value, list) else value
    return out
