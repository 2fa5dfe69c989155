"""What each experiment takes (`madlab experiment NAME`): the run options it uses, and its own.

An experiment's settings are a run's config (`madlab.config.RunConfig`: the same loop, algo,
toy_ddpm, edm and evaluation components, seeds, first_seed and device, each option declared once
in its component) plus the few options only that experiment has, declared here with `option()`:

    @dataclass
    class Landscape(ToyDDPMExperiment):
        USES = (*ToyDDPMExperiment.USES, "n_aux", "metric")    # the run options it reads
        DEFAULTS = {**ToyDDPMExperiment.DEFAULTS, "n_aux": 100_000, ...}   # its values of them
        SCALES = {"smoke": {...}, "quick": {"seeds": 8}, "paper": {...}}
        n_advanced: int = option(100_000, help="|D_a|: ...")   # its own options

The declarations are in `toy_settings` (the toy DDPM and Gaussian-fit experiments) and
`image_settings` (the EDM ones). `Landscape.at("smoke", ["n_aux=500"])` is the smoke scale with one setting changed. A setting is
named as `madlab run` and sweep files name options: by flat name (`n_aux`, `edm_lr`) or dotted
path (`algo.n_aux`, `edm.lr`); `--set KEY=VALUE`, the generated `--n-aux` flags and settings.json
use these names, and the names earlier versions used still work (ALIASES). The run options keep
the run's help, types and range checks; `validate()` adds what the experiment needs.
Torch-free, so `madlab experiment NAME --help` starts fast.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import sys
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from loops.options import (Spec, as_tree, check_value, coerce, get_path, lookup, non_negative, own_specs, parse,
                           positive, require, set_path)
from madlab.config import OPTIONS, RunConfig, check_device

SCALES = ("smoke", "quick", "paper")
ALIASES = {"metrics": "metric"}      # setting names of earlier versions -> today's
RUN_FIELDS = frozenset(f.name for f in dataclasses.fields(RunConfig))


@dataclass
class Experiment(RunConfig):
    """The settings of one experiment: the run options named in USES (a flat name, or a component
    such as "edm" for all its options) at the experiment's DEFAULTS and then its scale's values,
    and the options declared in the subclass. Build them with `at()` (a bare `Landscape()` holds
    the run's defaults, not the experiment's)."""

    NAME: ClassVar[str] = ""
    USES: ClassVar[tuple[str, ...]] = ("seeds", "first_seed", "device")
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    SCALES: ClassVar[dict[str, dict[str, Any]]] = {}
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {}   # a run option's choices narrowed here
    NOTES: ClassVar[dict[str, str]] = {}                 # what a run option means here, after its help

    # ------------------------------------------------------------------ building
    @classmethod
    def at(cls, scale: str = "quick", assignments: Iterable[str] = ()) -> "Experiment":
        """The settings at `scale` (smoke | quick | paper), then KEY=VALUE `assignments`."""
        require(scale in SCALES, f"unknown scale {scale!r}; choose one of {', '.join(SCALES)}")
        return cls().apply({**cls.DEFAULTS, **cls.SCALES.get(scale, {})}).assign(assignments)

    def apply(self, values: Mapping[str, Any]) -> "Experiment":
        """A copy with typed values set, by setting name."""
        out = copy.deepcopy(self)
        for key, value in values.items():
            spec = out.find(key)
            set_path(out, spec.path, coerce(spec, value))
        return out

    def assign(self, assignments: Iterable[str]) -> "Experiment":
        """A copy with KEY=VALUE assignments applied, VALUE typed by the setting (lists comma-separated)."""
        out = copy.deepcopy(self)
        for item in assignments:
            key, sep, raw = str(item).partition("=")
            require(bool(sep), f"--set expects KEY=VALUE, got {item!r}")
            spec = out.find(key)
            set_path(out, spec.path, parse(spec, raw))
        return out

    @classmethod
    def find(cls, key: str) -> Spec:
        """The setting named `key` (flat name or dotted path; an earlier name with a note on stderr)."""
        name = str(key).strip().replace("-", "_")
        if name in ALIASES:
            print(f"madlab: note: setting {name!r} is now {ALIASES[name]!r}", file=sys.stderr)
            name = ALIASES[name]
        return lookup(name, [*cls.settings(), *hidden(cls)], what="setting",
                      listed=f"madlab experiment {cls.NAME} --help")

    # ------------------------------------------------------------------ views
    @classmethod
    def settings(cls) -> list[Spec]:
        """Every setting the --help lists: the experiment's own options, then the run options it uses."""
        return listed(cls)

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its path, nested as the tree (settings.json; the run's config.json shape)."""
        return as_tree(self, [*self.settings(), *hidden(type(self))])

    # ------------------------------------------------------------------ checking
    def validate(self) -> "Experiment":
        """Types and choices of every setting, the run's range checks, then the experiment's own
        (`check`); ConfigError (one line) for bad input."""
        for spec in self.settings():
            value = get_path(self, spec.path)
            if value is not None or spec.default is not None:   # None: the component resolves it (lr)
                set_path(self, spec.path, check_value(spec, value))
        positive(self, "seeds")
        non_negative(self, "first_seed")
        self.loop.validate()
        self.algo.validate()
        check_device(self.device)
        self.check()
        return self

    def check(self) -> None:
        """The experiment's own conditions (ConfigError otherwise)."""

    def require_metric(self, allowed: tuple[str, ...]) -> None:
        """At least one metric, each in `allowed`, on at least 2 samples (FD and FID need a covariance)."""
        metric, n_eval = self.evaluation.metric, self.evaluation.n_eval
        require(bool(metric) and all(m in allowed for m in metric),
                f"metric must be among {', '.join(allowed)}, got {metric}")
        require(n_eval >= 2, f"n-eval must be at least 2, got {n_eval}")


@functools.cache
def listed(cls: type) -> list[Spec]:
    """The settings of experiment `cls` (Experiment.settings): its own under its name in --help."""
    own = [dataclasses.replace(spec, panel=cls.NAME) for f, spec in own_specs(cls) if f.name not in RUN_FIELDS]
    used = [dataclasses.replace(spec, choices=cls.CHOICES.get(spec.flat, spec.choices),
                                help=" ".join(filter(None, (spec.help, cls.NOTES.get(spec.flat)))))
            for spec in OPTIONS if spec.flat in cls.USES or spec.path[0] in cls.USES]
    return own + used


@functools.cache
def hidden(cls: type) -> list[Spec]:
    """The plain fields of the components in USES (edm.sample_batch, edm.quantize...): internal
    knobs that --set has always reached, listed nowhere else (device comes from the run's)."""
    out = []
    for name in cls.USES:
        part = {f.name: f for f in dataclasses.fields(RunConfig)}.get(name)
        if part is None or not part.metadata.get("nested"):
            continue
        component = typing.get_type_hints(RunConfig)[name]
        hints = typing.get_type_hints(component)
        for f in dataclasses.fields(component):
            if "help" not in f.metadata and f.name != "device" and hints[f.name] in (int, float, str, bool):
                out.append(Spec(flat=f"{name}.{f.name}", path=(name, f.name), kind=hints[f.name],
                                default=f.default, help="", choices=(), panel="", negative=None,
                                identity=True, branch=None))
    return out
