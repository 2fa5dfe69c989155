"""`madlab report DIR`: Figure 5 panels, MAD classification and the prophylactic threshold of a run
or sweep directory. The analysis itself is `analysis.report` (the notebooks call it too)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from analysis import paper
from madlab.commands.options import argument, command, option
from madlab.config import ConfigError
from madlab.store import RESULTS

stderr = Console(stderr=True)

CONFIG_VIEW = ["n_synth", "omega", "seeds", "last_generation", "first", "first_lo", "first_hi",
               "limit", "ratio", "ratio_lo", "ratio_hi", "drift", "mean_status",
               "median_first", "median_ratio", "median_ratio_lo", "median_ratio_hi", "median_drift",
               "median_status", "status"]
TAIL_VIEW = ["outlier_first", "outlier_window"]
BEST_VIEW = ["n_synth", "best_omega", "best_ratio", "best_lo", "best_hi", "best_status", "prevented",
             "mean_best_omega", "mean_best_ratio", "median_best_omega", "median_best_ratio",
             "standard_ratio", "standard_median_ratio", "standard_status", "omegas"]
PAPER_VIEW = ["paper_standard", "paper_sims_best"]
MAX_BOOT = 100_000     # bootstrap resamples; memory is about 16 bytes x resamples x (seeds + generations)
BOOT_MEMORY = 2 << 30  # refuse a --boot whose bootstrap would need more than this


# ---------------------------------------------------------------- loading
def load(directory: Path):
    """DIR/results.parquet of a run or a sweep directory; ConfigError (one line) when absent or empty."""
    import pandas as pd

    directory = Path(directory)
    if not directory.exists():
        raise ConfigError(f"{directory} does not exist; give a run or sweep directory")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory; give a run or sweep directory")
    path = directory / RESULTS
    frame = None
    if not up_to_date(directory):   # a sweep running or stopped: its finished tasks and generations
        from madlab.sweep import load_tasks
        from madlab.store import partial_rows

        sweep_tasks = load_tasks(directory)[1]
        frame, what = partial_rows(directory, {t.id: t.run for t in sweep_tasks})
        if frame is not None:
            stderr.print(f"{directory}: {RESULTS} is not up to date; reading the rows on disk: {what}")
            frame = finished_configurations(frame, sweep_tasks)
    tasks = sorted((directory / "tasks").glob("*.parquet")) if frame is None and not path.exists() else []
    if frame is None and not path.exists() and not tasks:
        raise ConfigError(f"{directory} holds no {RESULTS}; run `madlab run --out {directory}` or "
                          f"`madlab sweep ... --out {directory}` first (or wait until it finishes)")
    try:
        if frame is None and path.exists():
            frame = pd.read_parquet(path)
        elif frame is None:  # task files without a manifest: they have the same schema
            stderr.print(f"{directory} holds no {RESULTS} yet: reading its {len(tasks)} finished task files")
            frame = pd.concat([pd.read_parquet(p) for p in tasks], ignore_index=True)
    except Exception as err:  # noqa: BLE001 - a corrupt file is bad input, not a crash
        raise ConfigError(f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if frame.empty:
        raise ConfigError(f"{path} holds no rows yet")
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path} is not a madlab results table (it lacks the column(s) "
                          f"{', '.join(missing)}); give a run or sweep directory that madlab wrote")
    from madlab.config import with_later_options

    return with_later_options(frame)


def finished_configurations(frame, tasks):
    """The rows of the configurations whose every task has all its rows, when there is at least one
    such (a sweep being extended: an unfinished configuration's few generations would otherwise set
    the convergence window for all); else every row. Says on stderr what it left out."""
    from madlab.sweep import expected_rows

    expected: dict[str, int] = {}
    labels: dict[str, str] = {}
    for task in tasks:
        expected[task.run] = expected.get(task.run, 0) + expected_rows(task)
        labels[task.run] = " ".join(f"{k}={v}" for k, v in task.point.items()) or task.run
    have = frame.groupby("run").size()
    finished = [run for run, n in expected.items() if have.get(run, 0) >= n]
    unfinished = [run for run in expected if run not in finished and have.get(run, 0) > 0]
    if not unfinished:
        return frame
    if not finished:
        stderr.print(f"no configuration has finished yet: reporting the {len(unfinished)} unfinished ones "
                     f"on the generations they have")
        return frame
    stderr.print(f"left out {len(unfinished)} unfinished configuration{'s' * (len(unfinished) != 1)} "
                 f"({', '.join(labels[r] for r in unfinished)}): reporting the {len(finished)} finished ones")
    return frame[frame["run"].isin(finished)].reset_index(drop=True)


RESULT_COLUMNS = ("run", "seed", "generation", "metric", "value", "n_synth", "omega")   # what analyse reads


def up_to_date(directory: Path) -> bool:
    """Whether DIR/results.parquet holds every row on disk: every finished task, and no
    unfinished task has finished generations (true for a plain results table without a manifest)."""
    from madlab.store import checkpointed_generations, read_manifest, task_state
    from madlab.sweep import load_tasks, needs_merge

    try:
        if read_manifest(directory) is None:
            return True
        tasks = load_tasks(directory)[1]
    except ConfigError:
        return True
    return not needs_merge(directory, tasks) and not any(
        task_state(directory, t.id) != "done" and checkpointed_generations(directory, t.id) for t in tasks)


# ---------------------------------------------------------------- writing
def markdown_table(frame, digits: int = 3) -> str:
    from analysis.report import fmt, markdown_table as table

    def cell(value, column: str) -> str:      # shares near 1e-6: 2 significant digits
        return f"{value:.2g}" if column.startswith("outlier_") and isinstance(value, float) else fmt(value, digits)

    return table(frame, cell)


def write_markdown(r, directory: Path, out: Path, figures: list[Path]) -> Path:
    from analysis.report import family_name

    from analysis.metrics import OUTLIER_RADIUS

    lines = [f"# madlab report: {directory}", "",
             f"dist = {r.metric}; {r.window}; E[dist(G^inf)] = mean of E[dist(G^t)] over that window; "
             f"convergence ratio = E[dist(G^inf)] / E[dist(G^1)]; bands: {r.level:.0%} "
             "(E[dist(G^1)]: mean ± z·SE over seeds; ratios: percentile bootstrap over seeds).", "",
             f"**Statistic over seeds: {r.statistic}** (`--statistic`) decides `status`, `best_*` and the "
             f"threshold; the {r.other} is beside it. Columns without prefix are by the mean "
             "(the paper's E[·]); `median_*` replace E[dist(G^t)] by the median over seeds M_t "
             "(median ratio = mean of M_t over the window / M_1), which a few seeds decided by far "
             "samples do not move.", "",
             "Classification (SIMS paper section 2, read from the ratio's band; analysis.mad.classify): "
             "**MAD** if the curve still rises across the window (drift = (late-half mean − early-half "
             "mean) / E[dist(G^1)] > drift tolerance); else **prevented** if the band reaches "
             f"1 + {r.tolerance:g} (its lower end ≤ 1 + {r.tolerance:g}); else **mitigated** if the band "
             "lies below the standard (ω = 0) ratio of the same |D_s|; else **MAD** (a plateau above "
             "1 that SIMS does not lower).", ""]
    if r.outliers is not None:
        lines += [f"Outlier share: the share of a seed's evaluation samples beyond Mahalanobis radius "
                  f"{OUTLIER_RADIUS:g} under p_r, mean over seeds, at G^1 (`outlier_first`) and averaged "
                  f"over the window (`outlier_window`); p_r's own share is {r.own_rate:.2g}.", ""]
    for key, best in r.families(r.best):
        conv = r.rows_of(r.conv, key)
        in_paper = r.in_paper_setting(key)
        view = BEST_VIEW + (PAPER_VIEW if in_paper else [])
        conv_view = CONFIG_VIEW + (TAIL_VIEW if r.outliers is not None else [])
        lines += [f"## {family_name(key)}" if key else "## Results", "",
                  f"**Prophylactic threshold** by the {r.statistic} (largest |D_s| whose best ratio ≤ "
                  f"1 + {r.tolerance:g}): " + r.threshold_text(key)
                  + (f" (paper: about {paper.PAPER_THRESHOLD})" if in_paper else "")
                  + f"; by the {r.other}: {r.threshold_text(key, r.other)}.",
                  "", f"### Best ω per |D_s| (best_*: by the {r.statistic})", "", markdown_table(best[view]), ""]
        if r.companions:
            from analysis.metrics import LABELS
            from analysis.report import PAPER_METRIC
            lines += ["### Both statistics", "",
                      "Ratios by the mean over seeds, [95 % bootstrap band] and status, of each statistic "
                      "from the same per-seed rows (W2² is each seed's W2 squared)."
                      + (f" The paper's numbers are compared with {LABELS[PAPER_METRIC]}: POT's "
                         "`ot.emd2(a, b, ot.dist(x, y))` returns W2² (ot.dist's default cost is the squared "
                         "Euclidean distance), the usual way the distance is computed; the paper does not "
                         "say which it plotted, so W2 is beside it." if in_paper else ""), "",
                      markdown_table(r.compare(key)), "",
                      f"Threshold uncertainty by the {r.statistic}: {r.threshold_spread(key)}.", ""]
        lines += [
                  "### Every configuration", "",
                  markdown_table(conv.sort_values(["n_synth", "omega"])[conv_view]), ""]
        if not in_paper:
            lines += ["(Not the paper's Figure 5 setting — augment loop, gaussian2d target, toy DDPM "
                      "— so its published numbers are not shown.)", ""]
    lines += ["## Figures", ""] + [f"- `{p.name}`" for p in figures] + [""]
    from madlab.store import atomic_write_bytes

    path = out / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path


def write_report(directory: Path, out: Path, metric: Optional[str] = None, start: Optional[int] = None,
                 tolerance: float = paper.TOLERANCE, drift_tolerance: float = paper.DRIFT_TOLERANCE,
                 level: float = paper.LEVEL, n_boot: int = paper.N_BOOT, sizes=(125, 250),
                 statistic: str = "mean"):
    """Analyse DIR/results.parquet and write figures, CSV and Markdown tables into `out`."""
    from analysis.report import analyse, figures

    frame = load(directory)
    need = 16 * n_boot * (frame["seed"].nunique() + frame["generation"].nunique())
    if need > BOOT_MEMORY:
        raise ConfigError(f"--boot {n_boot} would need about {need / 2**30:.1f} GiB for this table's "
                          f"seeds and generations; lower it")
    try:
        r = analyse(frame, metric, start, tolerance, drift_tolerance, level, n_boot, statistic)
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cannot analyse {directory / RESULTS}: {str(err).strip() or type(err).__name__}") from None
    from madlab.store import DiskError, atomic_path, disk_error

    written, where = [], out
    try:                   # every file through a temporary one: a full disk leaves no 0-byte file
        out.mkdir(parents=True, exist_ok=True)
        for stem, fig in figures(r, sizes):
            for path, options in ((out / f"{stem}.png", {"dpi": 150, "format": "png"}),
                                  (out / f"{stem}.pdf", {"format": "pdf"})):
                where = path
                with atomic_path(path) as tmp:
                    fig.savefig(tmp, **options)
                written.append(path)
        figure_files = list(written)
        best = r.best.drop(columns=["threshold_value"])
        tables = [("configurations.csv", r.conv), ("best_omega.csv", best),
                  ("ratio_curves.csv", r.ratios), ("generation_curves.csv", r.curves)]
        if r.outliers is not None:
            tables.append(("outlier_curves.csv", r.outliers))
        if r.thresholds is not None:
            tables.append(("threshold_bootstrap.csv", r.thresholds))
        if r.companions:
            import pandas as pd
            both = [r.compare(key).assign(**key) for key, _ in r.families(r.best)]
            tables.append(("both_statistics.csv", pd.concat(both, ignore_index=True)))
        for name, table in tables:
            where = out / name
            with atomic_path(out / name) as tmp:
                table.to_csv(tmp, index=False)
            written.append(out / name)
        where = out / "report.md"
        written.append(write_markdown(r, directory, out, figure_files))
    except DiskError:
        raise
    except OSError as err:
        raise disk_error(where, err) from err
    return r, written


def print_summary(r) -> None:
    from rich.markup import escape
    from rich.table import Table

    from analysis.report import family_name, fmt

    console = Console(width=max(Console().width, 130))  # the table's 10 columns fit on one line
    console.print(escape(r.rules()))
    s, o = r.statistic, r.other
    for key, best in r.families(r.best):
        title = f"MAD summary ({r.metric}, t = {r.start}..T)" + (f": {family_name(key)}" if key else "")
        table = Table(title=escape(title))
        for col in ("|D_s|", f"best ω\n({s})", f"ratio\n({s})", f"{r.level:.0%} band\n({s})", f"status\n({s})",
                    f"best ω\n({o})", f"ratio\n({o})", f"{r.level:.0%} band\n({o})", f"status\n({o})",
                    "ω = 0 ratio\nmean / median"):
            table.add_column(escape(col), justify="right", no_wrap=True)
        for row in best.to_dict("records"):
            table.add_row(f"{row['n_synth']:g}",
                          *[x for st in (s, o) for x in (
                              f"{row[f'{st}_best_omega']:g}", f"{row[f'{st}_best_ratio']:.3f}",
                              f"{row[f'{st}_best_lo']:.3f}–{row[f'{st}_best_hi']:.3f}", row[f"{st}_best_status"])],
                          f"{fmt(row['standard_ratio'])} / {fmt(row['standard_median_ratio'])}")
        console.print(table)
        in_paper = f" (paper: about {paper.PAPER_THRESHOLD})" if r.in_paper_setting(key) else ""
        spread = r.threshold_spread(key)
        console.print(escape(f"prophylactic threshold (best ratio ≤ 1 + {r.tolerance:g}) by the {s}: "
                             f"{r.threshold_text(key)}{in_paper}{f' ({spread})' if spread else ''}; "
                             f"by the {o}: {r.threshold_text(key, o)}. The threshold reads the best "
                             f"ratio itself, as one reads the paper's Figure 5; the status words read "
                             f"its band (prevented: the band reaches 1 + {r.tolerance:g})"))
        if r.companions:
            print_compare(console, r, key)
    if r.outliers is not None:
        console.print(escape(r.summary()[-1]))


def print_compare(console, r, key: dict) -> None:
    """Both statistics side by side (analysis.report.Report.compare): per |D_s| and statistic,
    the standard and best ratios by the mean over seeds, the paper's numbers beside them."""
    from rich.markup import escape
    from rich.table import Table

    from analysis.metrics import LABELS
    from analysis.report import PAPER_METRIC, fmt

    table = r.compare(key)
    paper = "paper standard" in table
    title = ("Both statistics, from the same per-seed rows (mean over seeds; ratio [95 % band]; "
             "best against standard G¹: the best ω's E[dist(G^∞)] over the ω = 0 model's E[dist(G¹)])"
             + (f"; the paper's numbers are compared with {LABELS[PAPER_METRIC]}" if paper else ""))
    out = Table(title=escape(title))
    for col in ("|D_s|", "statistic", "ω = 0 ratio", "status", "best ω", "best ratio", "status",
                "best against\nstandard G¹", *(["paper ω = 0 / best"] if paper else [])):
        out.add_column(escape(col), justify="right", no_wrap=True)
    for row in table.to_dict("records"):
        for i, m in enumerate([r.metric, *r.companions]):
            cells = [f"{row['n_synth']:g}" if i == 0 else "", f"{LABELS.get(m, m)}",
                     row[f"{m} standard"], row[f"{m} standard status"], f"{row[f'{m} best omega']:g}",
                     row[f"{m} best"], row[f"{m} best status"], fmt(row[f"{m} best vs standard G1"])]
            if paper:
                cells.append(f"{fmt(row['paper standard'], 2)} / {fmt(row['paper best'])}"
                             if m == PAPER_METRIC else "")
            out.add_row(*map(escape, cells), end_section=i == len(r.companions))
    console.print(out)


def print_provenance(directory: Path) -> None:
    """Which code, machine and command produced the directory (its last session; madlab.provenance)."""
    from rich.markup import escape

    from madlab.provenance import summary
    from madlab.store import read_manifest

    try:
        sessions = (read_manifest(directory) or {}).get("sessions") or []
    except ConfigError:
        sessions = []
    if sessions:
        Console().print(escape(f"provenance: {summary(sessions[-1])}"
                               + (f" (and {len(sessions) - 1} earlier session(s), see sweep.json)"
                                  if len(sessions) > 1 else "")), soft_wrap=True)


OWN_OPTIONS = [
    argument("directory", metavar="DIR", type=click.Path(path_type=Path), help="A run directory (madlab run --out) or a sweep directory (madlab sweep --out): reads DIR/results.parquet."),
    option("--out", type=click.Path(path_type=Path), help="Where the figures and tables go [default: DIR/report]."),
    option("--metric", help="Which dist(G^t, p_r) to analyse: w2 | w2sq (each seed's W2 squared, what POT's emd2 returns) | w1 | fd | fid | an inlier version (w2_inlier, ...) [default: w2 if present, else the table's first metric]. W2² and the inlier versions are analysed beside W2 in any case."),
    option("--start", type=int, help=f"First generation of the convergence window: E[dist(G^inf)] = mean of E[dist(G^t)] over t = START..T [default: {paper.PAPER_START}, the paper's; for runs that end by generation {paper.PAPER_START}, the second half of the shortest run, as the output says]."),
    option("--tolerance", type=float, default=paper.TOLERANCE, show_default=True, help="A configuration counts as MAD-prevented when its convergence ratio <= 1 + TOLERANCE; the prophylactic threshold is the largest |D_s| whose best ratio passes."),
    option("--drift-tolerance", type=float, default=paper.DRIFT_TOLERANCE, show_default=True, help="A configuration counts as MAD (still diverging) when E[dist(G^t)] rises by more than DRIFT_TOLERANCE x E[dist(G^1)] from the first to the second half of the window."),
    option("--level", type=float, default=paper.LEVEL, show_default=True, help="Confidence level of every band (normal band for E[dist], seed bootstrap for ratios)."),
    option("--boot", type=int, default=paper.N_BOOT, show_default=True, help="Bootstrap resamples of the seeds for the ratio bands."),
    option("--sizes", default="125,250", show_default=True, help="Comma-separated |D_s| values whose ratio curves over generations are drawn (Figure 5 bottom); the two smallest run when none of them was."),
    option("--statistic", default="mean", show_default=True, metavar="[mean|median]", help="E[dist(G^t)] over seeds as the mean (the paper's) or the median: the one that decides MAD / mitigated / prevented, the best w and the threshold; the other is printed beside it."),
]


def register(app: click.Group) -> None:
    def report(directory: Path, out: Optional[Path], metric: Optional[str], start: Optional[int],
               tolerance: float, drift_tolerance: float, level: float, boot: int, sizes: str,
               statistic: str) -> None:
        """Figure 5 of the SIMS paper from a run or sweep directory: PNG + PDF figures, CSV + Markdown tables.

        Writes into OUT: figure5.png/.pdf (E[dist(G^1)] vs w; convergence ratio vs w per |D_s|;
        ratio curves over generations at |D_s| = 125 and 250; the outlier share per generation),
        generations.png/.pdf (E[dist(G^t)] per |D_s|), configurations.csv (one row per
        configuration: ratio, band, drift, MAD / mitigated / prevented, by the mean and by the
        median over seeds; outlier share), best_omega.csv (best w per |D_s| by each statistic and
        the prophylactic threshold), threshold_bootstrap.csv (the threshold on each bootstrap
        resample of the seeds), both_statistics.csv (W2 and W2² ratios and their inlier versions
        side by side, with the paper's numbers), ratio_curves.csv, generation_curves.csv,
        outlier_curves.csv and report.md (the tables in Markdown).
        MAD / mitigated / prevented as the paper's section 2 defines them: MAD when the ratio's
        band lies above 1 for standard training (or for SIMS no better than it) or the curve
        still rises; prevented when the band holds 1 (within --tolerance); mitigated when SIMS's
        band lies above 1 but below standard training's ratio.
        If other options than |D_s| and w vary, each combination gets its own figures. The
        paper's published numbers appear only beside configurations in its setting (augment
        loop, gaussian2d target, toy DDPM).

        Example: madlab report runs/fig5-quick
        """
        if not 1 <= boot <= MAX_BOOT:
            raise ConfigError(f"boot must be between 1 and {MAX_BOOT:,} resamples, got {boot}")
        if statistic not in ("mean", "median"):
            raise ConfigError(f"unknown statistic {statistic!r} (--statistic); choose one of mean, median")
        try:
            size_list = [float(s) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"sizes must be comma-separated numbers, got {sizes!r}") from None
        if not all(math.isfinite(s) and s > 0 for s in size_list):
            raise ConfigError(f"sizes must be positive finite numbers (|D_s| values), got {sizes!r}")
        size_list = [int(s) if s == int(s) else s for s in size_list]
        out_dir = out or Path(directory) / "report"
        if out_dir.exists() and not out_dir.is_dir():
            raise ConfigError(f"--out {out_dir} exists and is not a folder; the report writes several files into a folder")
        r, written = write_report(Path(directory), out_dir, metric, start, tolerance, drift_tolerance,
                                  level, boot, size_list, statistic)
        print_summary(r)
        print_provenance(Path(directory))
        Console().print(f"wrote {len(written)} files to {out_dir}: " + ", ".join(p.name for p in written))

    app.add_command(command("report", report, OWN_OPTIONS))
