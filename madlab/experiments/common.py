"""What every toy experiment shares: the DDPM backend, distances, outputs."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from analysis.distances import per_seed
from loops.options import require
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
    resolved = {"experiment": name, "scale": scale, "settings": settings.to_dict(), **extra,
                "headline": result.headline}
    (out / "settings.json").write_text(json.dumps(resolved, indent=2, default=str) + "\n")
    return paths + [out / "table.csv", out / "table.md", out / "measurements.csv", out / "settings.json"]
