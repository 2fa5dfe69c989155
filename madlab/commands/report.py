"""`madlab report DIR`: Figure 5 panels, MAD classification and the prophylactic threshold of a run or sweep directory."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typing_extensions import Annotated

from analysis import mad
from madlab.config import ConfigError
from madlab.store import RESULTS

stderr = Console(stderr=True)


# ---------------------------------------------------------------- loading
def load(directory: Path) -> pd.DataFrame:
    """DIR/results.parquet of a run or a sweep directory; ConfigError (one line) when absent or empty."""
    directory = Path(directory)
    if not directory.exists():
        raise ConfigError(f"{directory} does not exist; give a run or sweep directory")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory; give a run or sweep directory")
    path = directory / RESULTS
    tasks = sorted((directory / "tasks").glob("*.parquet")) if not path.exists() else []
    if not path.exists() and not tasks:
        raise ConfigError(f"{directory} holds no {RESULTS}; run `madlab run --out {directory}` or "
                          f"`madlab sweep ... --out {directory}` first (or wait until it finishes)")
    try:
        if path.exists():
            frame = pd.read_parquet(path)
        else:  # a sweep still running: its finished tasks have the same schema
            stderr.print(f"{directory} holds no {RESULTS} yet: reading its {len(tasks)} finished task files")
            frame = pd.concat([pd.read_parquet(p) for p in tasks], ignore_index=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file is bad input, not a crash
        raise ConfigError(f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if frame.empty:
        raise ConfigError(f"{path} holds no rows yet")
    return frame


def choose_metric(frame: pd.DataFrame, metric: Optional[str]) -> str:
    present = mad.metrics(frame)
    if metric is None:
        return "w2" if "w2" in present else present[0]
    if metric not in present:
        raise ConfigError(f"no rows for metric {metric!r} in this directory; it holds {', '.join(present)}")
    return metric


# ---------------------------------------------------------------- analysis
class Analysis:
    """Every table of one report: per configuration, per generation, per |D_s|, per family."""

    def __init__(self, frame: pd.DataFrame, metric: str, start: int, tolerance: float,
                 drift_tolerance: float, level: float, n_boot: int):
        kw = dict(metric=metric, level=level)
        self.metric, self.start, self.tolerance, self.level = metric, start, tolerance, level
        self.family = mad.family_columns(mad.configurations(frame, metric))
        self.conv = mad.convergence_table(frame, start=start, tolerance=tolerance,
                                          drift_tolerance=drift_tolerance, n_boot=n_boot, **kw)
        self.ratios = mad.ratio_curves(frame, n_boot=n_boot, **kw)
        self.curves = mad.generation_curves(frame, **kw)
        self.best = mad.best_omega(self.conv, by=self.family)
        thresholds = []
        for key, part in self.families(self.best):
            thresholds.append({**key, "threshold": mad.prophylactic_threshold(part, tolerance)})
        self.thresholds = pd.DataFrame(thresholds)
        self.best = self.best.merge(self.thresholds, on=self.family) if self.family else \
            self.best.assign(threshold=self.thresholds["threshold"].iloc[0])
        self.best["prevented"] = self.best["best_ratio"] <= 1 + tolerance

    def families(self, table: pd.DataFrame):
        """(family key dict, the family's rows) for each combination of the family columns."""
        if not self.family:
            yield {}, table
            return
        for key, part in table.groupby(self.family, sort=True, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            yield dict(zip(self.family, key)), part

    def rows_of(self, table: pd.DataFrame, key: dict) -> pd.DataFrame:
        mask = np.ones(len(table), dtype=bool)
        for col, value in key.items():
            mask &= (table[col].astype(str) == str(value)).to_numpy()
        return table[mask]


def family_name(key: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def family_slug(key: dict) -> str:
    text = "-".join(f"{k}{v}" for k, v in key.items())
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


# ---------------------------------------------------------------- writing
def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


CONFIG_VIEW = ["n_synth", "omega", "seeds", "last_generation", "first", "first_lo", "first_hi",
               "limit", "ratio", "ratio_lo", "ratio_hi", "drift", "status"]
BEST_VIEW = ["n_synth", "best_omega", "best_ratio", "best_lo", "best_hi", "best_status", "prevented",
             "standard_ratio", "standard_status", "omegas"]


def paper_columns(best: pd.DataFrame) -> pd.DataFrame:
    out = best.copy()
    out["paper_standard"] = [mad.PAPER_STANDARD.get(int(n), np.nan) for n in out["n_synth"]]
    out["paper_sims_best"] = [mad.PAPER_SIMS_BEST.get(int(n), np.nan) for n in out["n_synth"]]
    return out


def write_markdown(a: Analysis, directory: Path, out: Path, figures: list[Path]) -> Path:
    lines = [f"# madlab report: {directory}", "",
             f"dist = {a.metric}; E[dist(G^inf)] = mean of E[dist(G^t)] over t = {a.start}..T; "
             f"convergence ratio = E[dist(G^inf)] / E[dist(G^1)]; bands: {a.level:.0%} "
             "(E[dist(G^1)]: mean ± z·SE over seeds; ratios: percentile bootstrap over seeds).", "",
             "Classification (SIMS paper section 2): **MAD** if the curve still rises across the window "
             "(drift = (late-half mean − early-half mean) / E[dist(G^1)] > drift tolerance); else "
             f"**prevented** if ratio ≤ 1 + {a.tolerance:g}; else **mitigated** (plateau above generation 1).", ""]
    for key, best in a.families(a.best):
        conv = a.rows_of(a.conv, key)
        threshold = best["threshold"].iloc[0]
        title = f"## {family_name(key)}" if key else "## Results"
        lines += [title, "",
                  f"**Prophylactic threshold** (largest |D_s| whose best ratio ≤ 1 + {a.tolerance:g}): "
                  + (f"|D_s| = {threshold:g}" if threshold is not None and not pd.isna(threshold)
                     else "none — no |D_s| run keeps the best ratio within the tolerance")
                  + f" (paper: about {mad.PAPER_THRESHOLD}).", "",
                  "### Best ω per |D_s|", "",
                  markdown_table(paper_columns(best)[BEST_VIEW + ["paper_standard", "paper_sims_best"]]), "",
                  "### Every configuration", "",
                  markdown_table(conv.sort_values(["n_synth", "omega"])[CONFIG_VIEW]), ""]
    lines += ["## Figures", ""] + [f"- `{p.name}`" for p in figures] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def write_report(directory: Path, out: Path, metric: Optional[str] = None, start: int = mad.PAPER_START,
                 tolerance: float = mad.TOLERANCE, drift_tolerance: float = mad.DRIFT_TOLERANCE,
                 level: float = mad.LEVEL, n_boot: int = mad.N_BOOT, sizes=(125, 250)) -> tuple[Analysis, list[Path]]:
    """Analyse DIR/results.parquet and write figures, CSV and Markdown tables into `out`."""
    from analysis import plots

    frame = load(directory)
    metric = choose_metric(frame, metric)
    try:
        a = Analysis(frame, metric, start, tolerance, drift_tolerance, level, n_boot)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    figures = []
    for key, best in a.families(a.best):
        suffix = f"-{family_slug(key)}" if key else ""
        fig = plots.figure5(a.rows_of(a.conv, key), a.rows_of(a.ratios, key), best, metric=metric,
                            tolerance=tolerance, level=level, title=family_name(key), sizes=sizes)
        figures += plots.save(fig, out / f"figure5{suffix}")
        fig = plots.generations_figure(a.rows_of(a.curves, key), metric=metric, level=level,
                                       title=family_name(key))
        figures += plots.save(fig, out / f"generations{suffix}")
    written = list(figures)
    for name, table in (("configurations.csv", a.conv), ("best_omega.csv", paper_columns(a.best)),
                        ("ratio_curves.csv", a.ratios), ("generation_curves.csv", a.curves)):
        table.to_csv(out / name, index=False)
        written.append(out / name)
    written.append(write_markdown(a, directory, out, figures))
    return a, written


def print_summary(a: Analysis) -> None:
    console = Console(width=max(Console().width, 110))  # the table's 7 columns fit on one line
    for key, best in a.families(a.best):
        title = f"MAD summary ({a.metric}, t = {a.start}..T)" + (f": {family_name(key)}" if key else "")
        table = Table(title=escape(title))
        for col in ("|D_s|", "best ω", "best ratio", f"{a.level:.0%} band", "status", "ω = 0 ratio", "ω = 0 status"):
            table.add_column(escape(col), justify="right")
        for r in best.itertuples():
            table.add_row(f"{r.n_synth:g}", f"{r.best_omega:g}", f"{r.best_ratio:.3f}",
                          f"{r.best_lo:.3f}–{r.best_hi:.3f}", r.best_status, fmt(r.standard_ratio),
                          r.standard_status or "–")
        console.print(table)
        threshold = best["threshold"].iloc[0]
        console.print("prophylactic threshold (best ratio ≤ 1 + %g): %s" % (
            a.tolerance, f"|D_s| = {threshold:g}" if threshold is not None and not pd.isna(threshold) else "none"))


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        directory: Annotated[Path, typer.Argument(metavar="DIR", help="A run directory (madlab run --out) or a sweep directory (madlab sweep --out): reads DIR/results.parquet.", show_default=False)],
        out: Annotated[Optional[Path], typer.Option(help="Where the figures and tables go [default: DIR/report].")] = None,
        metric: Annotated[Optional[str], typer.Option(help="Which dist(G^t, p_r) to analyse: w2 | w1 | fd [default: w2 if present, else the table's first metric].")] = None,
        start: Annotated[int, typer.Option(help="First generation of the convergence window: E[dist(G^inf)] = mean of E[dist(G^t)] over t = START..T (the paper: 20 of 100).")] = mad.PAPER_START,
        tolerance: Annotated[float, typer.Option(help="A configuration counts as MAD-prevented when its convergence ratio <= 1 + TOLERANCE; the prophylactic threshold is the largest |D_s| whose best ratio passes.")] = mad.TOLERANCE,
        drift_tolerance: Annotated[float, typer.Option(help="A configuration counts as MAD (still diverging) when E[dist(G^t)] rises by more than DRIFT_TOLERANCE x E[dist(G^1)] from the first to the second half of the window.")] = mad.DRIFT_TOLERANCE,
        level: Annotated[float, typer.Option(help="Confidence level of every band (normal band for E[dist], seed bootstrap for ratios).")] = mad.LEVEL,
        boot: Annotated[int, typer.Option(help="Bootstrap resamples of the seeds for the ratio bands.")] = mad.N_BOOT,
        sizes: Annotated[str, typer.Option(help="Comma-separated |D_s| values whose ratio curves over generations are drawn (Figure 5 bottom); the two smallest run when none of them was.")] = "125,250",
    ) -> None:
        """Figure 5 of the SIMS paper from a run or sweep directory: PNG + PDF figures, CSV + Markdown tables.

        Writes into OUT: figure5.png/.pdf (E[dist(G^1)] vs w; convergence ratio vs w per |D_s|;
        ratio curves over generations at |D_s| = 125 and 250), generations.png/.pdf
        (E[dist(G^t)] per |D_s|), configurations.csv (one row per configuration: ratio, band,
        drift, MAD / mitigated / prevented), best_omega.csv (best w per |D_s| and the prophylactic
        threshold), ratio_curves.csv, generation_curves.csv and report.md (the tables in Markdown).
        If other options than |D_s| and w vary, each combination gets its own figures.

        Example: madlab report runs/fig5-quick
        """
        if not 0 < level < 1:
            raise ConfigError(f"level must lie strictly between 0 and 1, got {level}")
        if tolerance < 0 or drift_tolerance < 0:
            raise ConfigError("tolerance and drift-tolerance must be non-negative")
        if boot < 1:
            raise ConfigError(f"boot must be positive, got {boot}")
        try:
            size_list = [float(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"sizes must be comma-separated numbers, got {sizes!r}") from None
        size_list = [int(s) if s == int(s) else s for s in size_list]
        out_dir = out or Path(directory) / "report"
        a, written = write_report(Path(directory), out_dir, metric, start, tolerance, drift_tolerance,
                                  level, boot, size_list)
        print_summary(a)
        Console().print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written))
