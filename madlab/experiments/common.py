"""What every toy experiment shares: scales, settings overrides, the DDPM backend, distances, outputs."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from analysis.distances import per_seed
from madlab.config import ConfigError
from madlab.experiments import SCALES  # noqa: F401 (smoke | quick | paper; the CLI lists them)
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.learners import LEARNERS

# progress(done, total, message): called after every unit of work
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    return None


@dataclass
class Result:
    """What an experiment hands back: a tidy table, headline numbers and a figure builder."""

    table: pd.DataFrame                  # one row per measured value (long format)
    summary: pd.DataFrame                # the small table written as table.md / table.csv
    headline: dict[str, Any]             # the few numbers the docs quote
    figure: Callable[[], Any]            # () -> matplotlib Figure
    notes: list[str] = field(default_factory=list)  # one-line caveats printed beside the table
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # further tables: table-NAME.csv, in table.md


def override(settings, assignments: list[str]):
    """Return a copy of a settings dataclass with KEY=VALUE assignments applied (typed by field)."""
    types = {f.name: f for f in dataclasses.fields(settings)}
    changes = {}
    nested: dict[str, list[str]] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        head, dot, rest = key.partition(".")
        if dot:   # a component's option, e.g. edm.net=medium (the image experiments' EDMConfig)
            if head not in types or not dataclasses.is_dataclass(getattr(settings, head)):
                parts = [f for f, v in types.items() if dataclasses.is_dataclass(getattr(settings, f))]
                raise ConfigError(f"unknown setting group {head!r}; choose one of {', '.join(parts) or 'none'}")
            nested.setdefault(head, []).append(f"{rest}={raw}")
            continue
        if key not in types:
            raise ConfigError(f"unknown setting {key!r}; choose one of {', '.join(types)}")
        kind = str(types[key].type)  # the annotation, e.g. "int", "float", "list[float]"
        try:
            if kind == "bool":
                if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value: Any = raw.lower() in ("true", "1", "yes")
            elif kind.startswith("list["):
                item = {"list[int]": int, "list[float]": float}.get(kind, str)
                value = [item(v.strip()) for v in raw.split(",") if v.strip()]
            elif kind == "int":
                value = int(raw)
            elif kind == "float":
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise ConfigError(f"setting {key}: cannot read {raw!r} as {kind}") from None
        changes[key] = value
    for head, items in nested.items():
        try:
            changes[head] = override(changes.get(head, getattr(settings, head)), items)
        except ConfigError as err:
            raise ConfigError(f"{head}: {err}") from None
    return dataclasses.replace(settings, **changes)


def require(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def check_positive(settings, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        require(isinstance(value, (int, float)) and value > 0 and not math.isnan(value),
                f"{name} must be positive, got {value!r}")


def check_evaluation(metrics, n_eval: int, device: str) -> None:
    """The evaluation settings every DDPM experiment shares: metrics, sample size, device."""
    require(bool(metrics) and all(m in ("w1", "w2", "fd") for m in metrics),
            f"metrics must be among w1, w2, fd, got {metrics}")
    require(n_eval >= 2, "n_eval must be at least 2")
    check_device(device)


def check_device(device: str) -> None:
    if device.startswith("cuda"):
        require(torch.cuda.is_available(), f"device {device!r} asked for, but torch sees no CUDA device")
    else:
        require(device in ("cpu", "mps"), f"unknown device {device!r}; use cpu, cuda or cuda:N")


# the learners the experiments run: those on the fast path (toy.ddpm.ToyDDPM)
FAST_LEARNERS = tuple(name for name, learner in LEARNERS.items() if learner.fast)


def check_learner(learner: str) -> None:
    require(learner in FAST_LEARNERS, f"unknown learner {learner!r} for the experiments; choose "
                                      f"one of {', '.join(FAST_LEARNERS)}")


def ddpm_backend(device: str, *, learner: str | None = None, batch_size: int | None = None,
                 lr: float | None = None) -> ToyDDPM:
    """The toy DDPM with madlab's calibrated defaults; `learner`, `batch_size` and `lr` override
    them (the experiments' `learner`/`batch_size`/`lr` settings; a smaller fine-tuning lr)."""
    overrides = {k: v for k, v in (("learner", learner), ("batch_size", batch_size), ("lr", lr))
                 if v is not None}
    return ToyDDPM(DDPMConfig(device=device, **overrides), dim=2)


def distances(metrics: list[str], samples: torch.Tensor, real: torch.Tensor | None, target) -> dict:
    """{metric: [N] dist per seed}: w1/w2 exact OT against `real`, fd against target's (mean, cov)."""
    return {m: per_seed(m, samples.cpu(), None if real is None else real.cpu(), target) for m in metrics}


def mean_se(values) -> tuple[float, float]:
    """Mean and standard error over seeds."""
    if isinstance(values, torch.Tensor):
        v = values.detach().cpu().to(torch.float64).flatten()
    else:
        v = torch.from_numpy(np.array(values, dtype=np.float64)).flatten()
    se = float(v.std(unbiased=True) / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return float(v.mean()), se


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (analysis.report.markdown_table), NaN as an empty cell."""
    from analysis.report import markdown_table

    def cell(v, column: str) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}g}"
        return str(v)

    return markdown_table(frame, cell) + "\n"


def write_outputs(out: Path, name: str, scale: str, settings, extra: dict, result: Result) -> list[Path]:
    """figure.png/.pdf, table.csv/.md (the summary), measurements.csv (every value), settings.json."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig = result.figure()
    paths = [out / "figure.png", out / "figure.pdf"]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    plt.close(fig)
    result.summary.to_csv(out / "table.csv", index=False)
    result.table.to_csv(out / "measurements.csv", index=False)
    lines = [f"# madlab experiment {name} --scale {scale}", "", to_markdown(result.summary)]
    if result.headline:
        lines += ["", "| headline | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                  for k, v in result.headline.items()]
    if result.notes:
        lines += [""] + [f"- {n}" for n in result.notes]
    for key, frame in result.tables.items():
        frame.to_csv(out / f"table-{key}.csv", index=False)
        paths.append(out / f"table-{key}.csv")
        lines += ["", f"## {key}", "", to_markdown(frame)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    resolved = {"experiment": name, "scale": scale, "settings": dataclasses.asdict(settings), **extra,
                "headline": result.headline}
    (out / "settings.json").write_text(json.dumps(resolved, indent=2, default=str) + "\n")
    return paths + [out / "table.csv", out / "table.md", out / "measurements.csv", out / "settings.json"]
