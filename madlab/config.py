"""`RunConfig`: every option of one run, as a tree of the components' own configs.

    RunConfig
      loop        LoopConfig         loops/config.py       loop, gens, n_real, n_synth, epochs, warm_start
      algo        AlgoConfig         loops/config.py       algo, omega, n_aux, aux_epochs
      seeds, first_seed, backend, target
      toy_ddpm    DDPMConfig         toy/config.py         T, schedule, width, depth, ... (--backend toy-ddpm)
      gaussian    GaussianFitConfig  toy/config.py         estimator, sampling_bias   (--backend gaussian)
      edm         EDMConfig          madlab/edm/config.py  dataset, edm_net, edm_lr, ... (--backend edm)
      kde         KDEConfig          toy/config.py         bandwidth, kde_h           (--backend kde)
      evaluation  EvalConfig         here                  metric, tails, n_eval, save_samples, samples_dir
      device, seed_chunk

Each option is declared once, in its component's dataclass (`loops.options.option`), and has one
**flat name** (the flag without dashes: `omega`, `n_synth`, `width`, `edm_lr`): the key in sweep
files and the results column. Its dotted path (`toy_ddpm.width`) is accepted as an alias.
`config.json` and every results row carry the run's options and the active backend's only.
The backends' sub-configs (toy_ddpm ... kde) and what each backend needs of a run come from their
records in `madlab.backends`.

The stable API (tests, notebooks, scripts):

    cfg = RunConfig.from_flat(backend="gaussian", gens=3, omega=1.0)   # or from_flat({...})
    cfg.validate()          # types, choices, ranges; ConfigError (one line) otherwise
    cfg.loop.gens, cfg.algo.omega, cfg.toy_ddpm.width                  # the tree itself
    cfg.flat()              # {flat name: value}, the active backend's options only
    cfg.to_dict()           # the same, nested as the tree; RunConfig.from_dict() reads it back
    cfg.run_id()            # hash of what changes the numbers (not device, seed_chunk, checkpoints)
    cfg.seed_list()         # [first_seed, ..., first_seed + seeds - 1]
    cfg.recorded_metrics()  # the metric rows a run writes: chosen distances + tail diagnostics
    cfg.backend_config()    # the active backend's config, device filled in (cfg.ddpm(): toy DDPM)
    OPTIONS, option_spec(name)   # every option: flat name, flag, path, type, default, help, panel

Torch-free: `madlab --help` reads this without importing torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, make_dataclass
from typing import Any, ClassVar, Mapping

from analysis.metrics import recorded
from loops.config import AlgoConfig, LoopConfig
from loops.options import (ConfigError, Spec, as_tree, check, check_unique, coerce, get_path, lookup,
                           nested, non_negative, option, positive, require, set_path, specs)
from madlab.backends import BACKENDS, TOY_BACKENDS, backend_help
from madlab.limits import check_limits
from toy.config import TARGET_NAMES, DDPMConfig

__all__ = ["BACKENDS", "ConfigError", "EvalConfig", "OPTIONS", "RunConfig", "check_device", "option_spec"]

LOOP_PANEL = "Loop"
SEED_LIMIT = 2 ** 63     # seeds are hashed as unsigned 64-bit integers (loops/rng.py), kept signed-safe
EVAL_PANEL = "Evaluation and output"


@dataclass
class EvalConfig:
    """How dist(G^t, p_r) is measured every generation."""

    PANEL: ClassVar[str] = EVAL_PANEL

    metric: list[str] = option(default_factory=list, choices=tuple(dict.fromkeys(
        m for spec in BACKENDS.values() for m in spec.metrics)), help=(
        "dist(G^t, p_r), one or several comma-separated: w2 / w1 (exact OT against n-eval fresh "
        "real points), fd (Frechet distance to the true mean and covariance), fid (--backend edm: "
        "Frechet distance of features to the whole data set's). Empty: w2, or fid for --backend edm. "
        "Tail diagnostics (toy backends): outlier_share, w2_inlier, w1_inlier, fd_inlier."))
    tails: bool = option(True, identity=False, help=(
        "Toy backends: beside each chosen distance m (w2, w1, fd) also record outlier_share (share "
        "of samples beyond Mahalanobis radius 5 under p_r; p_r's own: 3.7e-6 in 2-D) and m_inlier "
        "(m on the samples within it). Adds rows, changes no other number (not in the run id). "
        "None for --backend edm."))
    n_eval: int = option(1000, help=(
        "Model samples per seed per generation used to measure the distance (and real samples, "
        "for w1/w2)."))
    save_samples: bool = option(False, identity=False, help=(
        "Toy backends: keep every generation's evaluation samples (float32 .npz per seed chunk and "
        "generation, n-eval x dim x 4 bytes per seed) under OUT/samples, for `madlab samples`. "
        "Changes no number and not the run id."))
    samples_dir: str = option("", identity=False, help=(
        "Where --save-samples writes [default: OUT/samples, set by madlab run and madlab sweep]; one "
        "folder per configuration inside (madlab/samples.py)."))

    def validate(self) -> "EvalConfig":
        check(self)
        positive(self, "n_eval")
        require(self.save_samples or not self.samples_dir, "--samples-dir needs --save-samples")
        return self


def check_device(device: str) -> None:
    """cpu, mps, cuda or cuda:N, and CUDA only where torch sees it (imports torch then)."""
    if device.startswith("cuda"):
        import torch
        require(torch.cuda.is_available(), f"device {device!r} asked for, but torch sees no CUDA device")
    else:
        require(device in ("cpu", "mps"), f"unknown device {device!r}; use cpu, cuda or cuda:N")


def recorded_metrics(backend: str, metric, tails: bool) -> list[str]:
    """The metrics a run of `backend` records, one results row each per seed and generation: the
    chosen distances and, on vector data with `tails`, their tail diagnostics. Plain values, so a
    sweep can count a task's rows from its flat config without building a RunConfig."""
    spec = BACKENDS.get(backend)
    return list(metric) if spec is not None and not spec.toy else recorded(metric, tails)


@dataclass
class _RunHead:
    """RunConfig's options before the backends' (a dataclass keeps its fields in order: the order
    of --help, config.json and the results columns)."""

    loop: LoopConfig = nested(LoopConfig)
    seeds: int = option(16, help="Independent runs, trained together as one tensor.")
    first_seed: int = option(0, help=(
        "Seeds are FIRST_SEED .. FIRST_SEED+SEEDS-1; seed k's numbers do not depend on the others."))
    backend: str = option("toy-ddpm", choices=tuple(BACKENDS), help=backend_help())   # madlab.backends
    target: str = option("gaussian2d", choices=TARGET_NAMES, branch=TOY_BACKENDS, help=(
        "p_r of the toy backends: gaussian2d = N(0, [[2,1],[1,2]]) as in the paper; mixture2d = "
        "two modes at (±3, 0)."))
    algo: AlgoConfig = nested(AlgoConfig)


# then one sub-config per backend, from its record (madlab.backends), its options active only under
# its --backend: toy_ddpm: DDPMConfig, gaussian: GaussianFitConfig, edm: EDMConfig, kde: KDEConfig
_RunBackends = make_dataclass(
    "_RunBackends", [(spec.options, spec.config, nested(spec.config, branch=name))
                     for name, spec in BACKENDS.items()],
    bases=(_RunHead,), namespace={"__module__": __name__})


@dataclass
class RunConfig(_RunBackends):
    """One run: a loop, an algorithm, a backend, an evaluation, and how many seeds."""

    PANEL: ClassVar[str] = LOOP_PANEL

    evaluation: EvalConfig = nested(EvalConfig)
    device: str = option("cpu", identity=False, panel=EVAL_PANEL, help="cpu, cuda or cuda:N.")
    seed_chunk: int = option(1024, identity=False, panel=EVAL_PANEL, help=(
        "Most seeds trained together in one tensor (memory knob; numbers do not change)."))
    keep_checkpoints: bool = option(False, identity=False, panel=EVAL_PANEL, help=(
        "Keep every generation's checkpoint (tasks/<id>.ckpt/) after a task finishes; by default "
        "only the newest is kept while it runs, and none once it is done."))

    # ------------------------------------------------------------------ building
    @classmethod
    def from_flat(cls, options: Mapping[str, Any] | None = None, **more: Any) -> "RunConfig":
        """A config from options by flat name (`omega`, `n-synth`) or dotted path
        (`toy_ddpm.width`); the others keep their defaults. Not validated yet."""
        cfg = cls()
        for key, value in {**dict(options or {}), **more}.items():
            spec = lookup(key, OPTIONS)
            set_path(cfg, spec.path, coerce(spec, value))
        return cfg

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """The inverse of `to_dict()` (nested); flat names are accepted at any level too."""
        flat: dict[str, Any] = {}

        def walk(prefix: tuple[str, ...], part: Mapping[str, Any]) -> None:
            for key, value in part.items():
                if isinstance(value, Mapping):
                    walk(prefix + (key,), value)
                else:
                    flat[".".join(prefix + (key,))] = value

        walk((), data)
        return cls.from_flat(flat)

    # ------------------------------------------------------------------ checking
    def validate(self) -> "RunConfig":
        """Check every option the run uses (types strictly, choices, ranges) and resolve the
        defaults that depend on other options; ConfigError (one line) for bad input."""
        check(self)
        positive(self, "seeds", "seed_chunk")
        non_negative(self, "first_seed")
        require(self.first_seed + self.seeds <= SEED_LIMIT,
                f"seeds must stay below 2^63 (first-seed + seeds = {self.first_seed + self.seeds})")
        self.loop.validate()
        self.algo.validate()
        self.evaluation.validate()
        check_limits(self)              # bounded work, before anything is built (issue 25)
        backend = BACKENDS[self.backend]
        getattr(self, backend.options).validate()   # the other backends' are unused
        ev = self.evaluation
        if not ev.metric:
            ev.metric = [backend.metrics[0]]
        for m in ev.metric:
            require(m in backend.metrics, f"unknown metric {m!r} for backend {self.backend}; choose "
                                          f"one of {', '.join(backend.metrics)}")
        require(ev.n_eval >= 2 or not {"fd", "fd_inlier"} & set(ev.metric), "fd needs n-eval >= 2")
        if backend.check is not None:
            backend.check(self)
        require(backend.toy or not ev.save_samples, "--save-samples keeps vector samples: toy backends only")
        check_device(self.device)
        return self

    # ------------------------------------------------------------------ views
    def is_active(self, spec: Spec) -> bool:
        """Whether option `spec` applies to this run (it belongs to no backend or to this one)."""
        return spec.branch is None or self.backend in spec.branch

    def flat(self, active_only: bool = True) -> dict[str, Any]:
        """{flat name: value} of the run's options (with active_only, the active backend's only)."""
        return {s.flat: get_path(self, s.path) for s in OPTIONS if not active_only or self.is_active(s)}

    def to_dict(self) -> dict[str, Any]:
        """The run's options (the active backend's only), nested as the tree: config.json."""
        return as_tree(self, [s for s in OPTIONS if self.is_active(s)])

    def identity(self) -> dict[str, Any]:
        """What changes the numbers, by flat name: the active options but device, seed_chunk
        and checkpoint folders (they only change speed or where files go)."""
        return {s.flat: get_path(self, s.path) for s in OPTIONS if s.identity and self.is_active(s)}

    def run_id(self) -> str:
        """Hash of identity(), less the later-added options at their defaults (option's
        id_if_default), so a run recorded before such an option existed keeps its id."""
        quiet = {s.flat for s in OPTIONS if not s.id_if_default}
        ident = {k: v for k, v in self.identity().items()
                 if k not in quiet or v != option_spec(k).default}
        blob = json.dumps(ident, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def recorded_metrics(self) -> list[str]:
        """Every metric a run records, one results row each per seed and generation: the chosen
        distances, then (toy backends, --tails) outlier_share and each chosen m's m_inlier
        (analysis.metrics.recorded). Call after validate()."""
        return recorded_metrics(self.backend, self.evaluation.metric, self.evaluation.tails)

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def backend_config(self, backend: str | None = None):
        """The config of `backend` (default: the active one), with the run's device filled in."""
        part = getattr(self, BACKENDS[backend or self.backend].options)
        if any(f.name == "device" for f in dataclasses.fields(part)):
            part = dataclasses.replace(part, device=self.device)
        return part

    def ddpm(self) -> DDPMConfig:
        """The toy DDPM's config with the run's device (what `toy.ddpm.ToyDDPM` takes)."""
        return self.backend_config("toy-ddpm")


OPTIONS: list[Spec] = specs(RunConfig)
check_unique(OPTIONS)


def with_later_options(frame: pd.DataFrame) -> pd.DataFrame:
    """A results table whose rows recorded before an option existed (the options declared with
    id_if_default=False: their default is what every earlier run did) carry that default in the
    option's column instead of a null, so that rows of one configuration recorded before and
    after the option was added read as one configuration (one run id already says so), not as
    two families of a report."""
    later = {s.flat: s.default for s in OPTIONS if not s.id_if_default and s.flat in frame.columns}
    missing = {k: v for k, v in later.items() if frame[k].isna().any()}
    return frame.fillna(missing) if missing else frame


def option_spec(name: str) -> Spec:
    """The option called `name` (flat name, with dashes or underscores, or dotted path)."""
    return lookup(name, OPTIONS)
