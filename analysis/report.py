"""One analysis of any results table, shared by `madlab report` and the notebooks.

    from analysis.report import analyse, figures
    r = analyse(frame)                   # frame = pd.read_parquet(DIR / "results.parquet")
    print("\\n".join(r.summary()))        # metric, window, per family: best omega, threshold
    for name, fig in figures(r): ...     # figure5[-family], generations[-family]

The rules, the same everywhere:

- metric     the one asked for, else w2 when the table has it, else the table's first metric.
- statistic  E[dist(G^t)] over seeds as the mean (the paper's, default) or the median; every
             table carries both (analysis.mad), the one asked for drives the classification, the
             best omega and the threshold, and the other is shown beside it.
- tails      when the table has outlier_share rows (every toy run records them), each
             configuration gets its mean outlier share at G^1, over the window and at G^T, and
             the figure a panel of the share per generation against p_r's own rate.
- window     E[dist(G^inf)] is the mean over t = start..T. The paper's start (20) when every
             configuration ran past generation 20; otherwise, for shorter runs, the second half of
             the shortest run (start = max(2, T // 2)). The rule applied is stated (`window`).
- families   options other than |D_s| and omega that vary in the table split it into families;
             each family gets its own Figure 5, tables and threshold.
- paper      the published Figure 5 numbers and threshold are shown beside a family only when it
             is in the paper's setting (augment loop, gaussian2d target, toy DDPM backend).
- threshold  located (the largest |D_s| whose best ratio <= 1 + tolerance, a larger |D_s| failing),
             not located ("none below the largest size run": every |D_s| run passes), or none;
             with its uncertainty: the same rule on each bootstrap resample of the seeds
             (mad.threshold_distribution), e.g. "250 (bootstrap: 250 in 71 %, 125 in 22 %)".
- both statistics  beside the metric analysed, its companions from the same per-seed rows
             (`COMPANIONS`): W2^2 beside W2 (mad.with_squares) and the inlier versions, each a
             full analysis of its own (Report.companions) summarised side by side
             (Report.compare). The paper's published ratios are compared with E[W2^2]: POT's
             `ot.emd2(a, b, ot.dist(x, y))` -- ot.dist's default cost is the squared Euclidean
             distance -- returns W2^2, the usual way "the Wasserstein distance" is computed in
             PyTorch code; the paper does not say which it plotted, so E[W2] is shown beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from scipy.stats import chi2

from analysis import mad
from analysis.metrics import LABELS, OUTLIER_RADIUS, OUTLIER_SHARE
from analysis.paper import (DRIFT_TOLERANCE, LEVEL, N_BOOT, PAPER_SETTING, PAPER_SIMS_BEST,
                            PAPER_STANDARD, PAPER_START, PAPER_THRESHOLD, TOLERANCE)

# p_r's own share beyond the outlier radius: P(chi2_d > R^2) with d = 2, the dimension of every toy
# target (toy.targets; for a mixture an upper bound, analysis.tails.own_rate): exp(-12.5) = 3.7e-6
OWN_RATE = float(chi2.sf(OUTLIER_RADIUS ** 2, 2))
# the metrics analysed beside each metric (when the table has them), from the same per-seed rows
COMPANIONS = {"w2": ("w2sq", "w2_inlier", "w2sq_inlier"), "w2sq": ("w2", "w2sq_inlier", "w2_inlier"),
              "w2_inlier": ("w2sq_inlier",), "w2sq_inlier": ("w2_inlier",),
              "w1": ("w1_inlier",), "fd": ("fd_inlier",)}
PAPER_METRIC = "w2sq"   # the statistic the published ratios are compared with (module docstring)


def choose_metric(frame: pd.DataFrame, metric: str | None = None) -> str:
    """The metric to analyse (see the module docstring); ValueError if `metric` is absent."""
    present = mad.metrics(frame)
    if not present:
        raise ValueError("the results table holds no metric rows")
    if metric is None:
        return "w2" if "w2" in present else present[0]
    if metric not in present:
        raise ValueError(f"no rows for metric {metric!r} in this table; it holds {', '.join(present)}")
    return metric


def window(last_generation: int, start: int | None = None) -> tuple[int, str]:
    """(start, the rule as one sentence) for runs whose shortest ends at `last_generation`."""
    T = int(last_generation)
    if T < 3:
        raise ValueError(f"the runs end at generation {T}: a convergence window needs generations "
                         "2..T with T >= 3")
    if start is not None:
        if not 2 <= start <= T - 1:
            raise ValueError(f"the convergence window starts at generation {start} but the last "
                             f"generation is {T}; choose a start between 2 and {T - 1}")
        return start, f"window t = {start}..T (asked for)"
    if T > PAPER_START:
        return PAPER_START, f"window t = {PAPER_START}..T (the paper's)"
    start = max(2, T // 2)
    return start, (f"window t = {start}..{T}: the runs end at generation {T}, before the paper's "
                   f"window (t = {PAPER_START}..T) starts, so the window is the second half of the run")


@dataclass
class Report:
    """Every table of one analysis, and the rules it applied."""

    metric: str
    start: int
    window: str                  # the window rule as applied, one sentence
    tolerance: float
    level: float
    family: list[str]            # varying options besides |D_s| and omega
    conv: pd.DataFrame           # mad.convergence_table: one row per configuration
    ratios: pd.DataFrame         # mad.ratio_curves
    curves: pd.DataFrame         # mad.generation_curves
    best: pd.DataFrame           # mad.best_omega per family, + threshold, threshold_status, paper_*,
                                 # and <statistic>_threshold_status / _value for both statistics
    statistic: str = "mean"      # "mean" or "median": drives status, best omega and threshold
    outliers: pd.DataFrame | None = None  # mad.generation_curves of outlier_share (None: no such rows)
    own_rate: float = OWN_RATE   # p_r's own outlier share
    thresholds: pd.DataFrame | None = None  # mad.threshold_distribution by `statistic`, per family
    companions: dict | None = None          # metric -> Report of the same table (COMPANIONS)

    def threshold_spread(self, key: dict) -> str:
        """The threshold's bootstrap distribution for family `key`, as 'x in p %' items."""
        if self.thresholds is None or self.thresholds.empty:
            return ""
        items = []
        for r in self.rows_of(self.thresholds, key).to_dict("records"):
            what = {"located": f"{r['value']:g}", "above": f"above {r['value']:g}",
                    "none": "none"}[r["outcome"]]
            items.append(f"{what} in {r['share']:.0%}")
        return "bootstrap over seeds: " + ", ".join(items)

    def compare(self, key: dict) -> pd.DataFrame:
        """Per |D_s| of family `key`, by the mean over seeds, for this metric and each companion:
        the standard (omega = 0) ratio [band] and status, the best omega's ratio [band] and
        status and its limit against the standard model's G^1 (`best vs standard G1`); and the
        paper's numbers where the family is in its setting."""
        reports = {self.metric: self, **(self.companions or {})}
        out = None
        for metric, r in reports.items():
            best = r.rows_of(r.best, key)
            conv = r.rows_of(r.conv, key)
            standard = conv[np.isclose(conv["omega"].astype(float), 0.0)].set_index("n_synth")
            part = pd.DataFrame({"n_synth": best["n_synth"].to_numpy()})
            n = part["n_synth"]
            part[f"{metric} standard"] = [band_text(standard, x, "ratio") for x in n]
            part[f"{metric} standard status"] = [standard["mean_status"].get(x, "–") for x in n]
            part[f"{metric} best omega"] = best["mean_best_omega"].to_numpy()
            part[f"{metric} best"] = [f"{r_:.3f} [{lo:.3f}, {hi:.3f}]" for r_, lo, hi in
                                      zip(best["mean_best_ratio"], best["mean_best_lo"], best["mean_best_hi"])]
            part[f"{metric} best status"] = best["mean_best_status"].to_numpy()
            at_best = conv.set_index(["n_synth", "omega"])["ratio_standard_first"]
            part[f"{metric} best vs standard G1"] = [at_best.get((x, o), np.nan) for x, o in
                                                     zip(n, best["mean_best_omega"])]
            out = part if out is None else out.merge(part, on="n_synth", how="outer")
        if self.in_paper_setting(key):
            out["paper standard"] = [PAPER_STANDARD.get(int(x), np.nan) for x in out["n_synth"]]
            out["paper best"] = [PAPER_SIMS_BEST.get(int(x), np.nan) for x in out["n_synth"]]
        return out

    @property
    def other(self) -> str:
        """The statistic shown beside the one asked for."""
        return "median" if self.statistic == "mean" else "mean"

    def families(self, table: pd.DataFrame):
        """(family key dict, the family's rows of `table`) for each family."""
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

    def in_paper_setting(self, key: dict) -> bool:
        """Whether every configuration of family `key` is in the paper's Figure 5 setting."""
        return paper_setting(self.rows_of(self.conv, key))

    def threshold_text(self, key: dict, statistic: str | None = None) -> str:
        """The prophylactic threshold of family `key` by `statistic` (default: the one asked for)."""
        best = self.rows_of(self.best, key)
        stat = statistic or self.statistic
        status, value = best[f"{stat}_threshold_status"].iloc[0], best[f"{stat}_threshold_value"].iloc[0]
        return threshold_sentence(status, value, self.tolerance)

    def rules(self) -> str:
        """The metric, window and statistic as one line."""
        return (f"dist = {self.metric}; {self.window}; statistic over seeds: {self.statistic} "
                f"(classification, best omega, threshold), the {self.other} beside it")

    def summary(self) -> list[str]:
        """The analysis in plain lines: the rules, then per family the best omega per |D_s| and
        the prophylactic threshold, by the statistic asked for and by the other."""
        lines = [self.rules()]
        s, o = self.statistic, self.other
        for key, best in self.families(self.best):
            lines.append(f"{family_name(key) or 'all configurations'}:")
            for r in best.to_dict("records"):
                lines.append(f"  |D_s| = {r['n_synth']:g}: by {s}: best omega {r[f'{s}_best_omega']:g}, "
                             f"ratio {r[f'{s}_best_ratio']:.3f} ({r[f'{s}_best_status']}); by {o}: best omega "
                             f"{r[f'{o}_best_omega']:g}, ratio {r[f'{o}_best_ratio']:.3f} ({r[f'{o}_best_status']}); "
                             f"omega = 0: mean {fmt(r['standard_ratio'])}, median {fmt(r['standard_median_ratio'])}")
            paper = f" (paper: about {PAPER_THRESHOLD})" if self.in_paper_setting(key) else ""
            spread = self.threshold_spread(key)
            lines.append(f"  prophylactic threshold by {s}: {self.threshold_text(key)}{paper}"
                         f"{f' ({spread})' if spread else ''}; by {o}: {self.threshold_text(key, o)}")
            for metric, other in (self.companions or {}).items():
                lines.append(f"  {LABELS.get(metric, metric)} ({metric}): threshold by {s} "
                             f"{other.threshold_text(key)}; omega = 0 ratios "
                             + ", ".join(f"{r['n_synth']:g}: {fmt(r['standard_ratio'])}"
                                         for r in other.rows_of(other.best, key).to_dict("records")))
        if self.outliers is not None:
            lines.append(f"outlier share (Mahalanobis radius > {OUTLIER_RADIUS:g} under p_r; p_r's own "
                         f"{self.own_rate:.2g}): mean over seeds at G^1 {self.conv['outlier_first'].min():.3g}"
                         f"..{self.conv['outlier_first'].max():.3g}, over the window "
                         f"{self.conv['outlier_window'].min():.3g}..{self.conv['outlier_window'].max():.3g} "
                         "across configurations")
        return lines


def band_text(table: pd.DataFrame, n_synth, column: str) -> str:
    """'ratio [lo, hi]' of `table` (indexed by n_synth) at n_synth, or '–' when absent."""
    if n_synth not in table.index:
        return "–"
    row = table.loc[n_synth]
    return f"{row[column]:.3f} [{row[column + '_lo']:.3f}, {row[column + '_hi']:.3f}]"


def paper_setting(conv: pd.DataFrame) -> bool:
    """Whether the configurations of `conv` are all in the paper's setting (PAPER_SETTING)."""
    return all(col in conv.columns and (conv[col].astype(str) == value).all()
               for col, value in PAPER_SETTING.items())


def threshold_sentence(status: str, value, tolerance: float) -> str:
    if status == "located":
        return f"|D_s| = {value:g}"
    if status == "above":
        return (f"none below the largest size run (every |D_s| run, up to {value:g}, keeps its best "
                f"ratio <= 1 + {tolerance:g}; the threshold lies above)")
    return f"none (no |D_s| run keeps its best ratio <= 1 + {tolerance:g})"


def family_name(key: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items())


def family_slug(key: dict) -> str:
    text = "-".join(f"{k}{v}" for k, v in key.items())
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in text)


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, (float, np.floating)):
        return f"{x:.{digits}f}"
    return str(x)


def markdown_table(frame: pd.DataFrame, cell=lambda value, column: str(value)) -> str:
    """`frame` as a GitHub-flavoured Markdown table (a header, a rule, a line per row; no
    trailing newline), `cell(value, column)` writing each value: madlab report's tables and an
    experiment's table.md are written with it."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, columns)) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def outlier_columns(frame: pd.DataFrame, conv: pd.DataFrame, start: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """`conv` with each configuration's mean outlier share over seeds at G^1 (outlier_first), over
    the window t = start..T (outlier_window) and at its last generation (outlier_last), and the
    share's generation curves; (conv, None) when the table has no outlier_share rows."""
    if OUTLIER_SHARE not in mad.metrics(frame):
        return conv, None
    keys = [c for c in mad.config_columns(mad.prepare(frame, OUTLIER_SHARE)) if c in conv.columns]
    share = {}
    for cf in mad.configurations(frame, OUTLIER_SHARE):
        mean = cf.values.mean(axis=0)
        share[tuple(str(cf.key[k]) for k in keys)] = (mean[0], mean[cf.generations >= start].mean(), mean[-1])
    found = [share.get(tuple(str(v) for v in row), (np.nan,) * 3) for row in conv[keys].itertuples(index=False)]
    first, window_, last = (np.array(col, dtype=float) for col in zip(*found)) if found else ([], [], [])
    conv = conv.assign(outlier_first=first, outlier_window=window_, outlier_last=last)
    return conv, mad.generation_curves(frame, OUTLIER_SHARE)


def analyse(frame: pd.DataFrame, metric: str | None = None, start: int | None = None,
            tolerance: float = TOLERANCE, drift_tolerance: float = DRIFT_TOLERANCE,
            level: float = LEVEL, n_boot: int = N_BOOT, statistic: str = "mean",
            companions: bool = True) -> Report:
    """Analyse a results table (module docstring); ValueError (one line) for bad input. With
    `companions`, the metrics of COMPANIONS[metric] present in the table are analysed too."""
    frame = mad.with_squares(frame)
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if not (tolerance >= 0 and drift_tolerance >= 0):
        raise ValueError("tolerance and drift-tolerance must be non-negative numbers")
    mad.check_statistic(statistic)
    metric = choose_metric(frame, metric)
    confs = mad.configurations(frame, metric)
    start, rule = window(min(int(cf.generations[-1]) for cf in confs), start)
    family = mad.family_columns(confs)
    kw = dict(metric=metric, level=level)
    conv = mad.convergence_table(frame, start=start, tolerance=tolerance, statistic=statistic,
                                 drift_tolerance=drift_tolerance, n_boot=n_boot, **kw)
    outliers = None
    if metric != OUTLIER_SHARE:
        conv, outliers = outlier_columns(frame, conv, start)
    report = Report(metric=metric, start=start, window=rule, tolerance=tolerance, level=level,
                    family=family, conv=conv, ratios=mad.ratio_curves(frame, n_boot=n_boot, **kw),
                    curves=mad.generation_curves(frame, **kw),
                    best=mad.best_omega(conv, by=family, statistic=statistic),
                    statistic=statistic, outliers=outliers)
    parts = []
    for key, best in report.families(report.best):
        status, value = mad.threshold(best, tolerance)
        paper = report.in_paper_setting(key)
        for stat in mad.STATISTICS:
            st, v = mad.threshold(best.assign(best_ratio=best[f"{stat}_best_ratio"]), tolerance)
            best = best.assign(**{f"{stat}_threshold_status": st,
                                  f"{stat}_threshold_value": v if v is not None else np.nan})
        best = best.assign(
            threshold=value if status == "located" else np.nan, threshold_status=status,
            threshold_value=value if value is not None else np.nan,
            prevented=best["best_ratio"] <= 1 + tolerance,
            paper_standard=[PAPER_STANDARD.get(int(n), np.nan) if paper else np.nan for n in best["n_synth"]],
            paper_sims_best=[PAPER_SIMS_BEST.get(int(n), np.nan) if paper else np.nan for n in best["n_synth"]])
        parts.append(best)
    report.best = pd.concat(parts, ignore_index=True)
    report.thresholds = mad.threshold_distribution(frame, metric, start, tolerance, statistic,
                                                   by=family, n_boot=n_boot)
    if companions:
        present = set(mad.metrics(frame))
        report.companions = {m: analyse(frame, m, start, tolerance, drift_tolerance, level, n_boot,
                                        statistic, companions=False)
                             for m in COMPANIONS.get(metric, ()) if m in present}
    return report


def figures(report: Report, sizes=(125, 250)) -> list[tuple[str, object]]:
    """(file stem, matplotlib Figure) of every figure `madlab report` writes: per family the
    Figure 5 panels and the generation curves."""
    from analysis import plots

    out = []
    for key, best in report.families(report.best):
        suffix = f"-{family_slug(key)}" if key else ""
        title = family_name(key)
        out.append((f"figure5{suffix}", plots.figure5(
            report.rows_of(report.conv, key), report.rows_of(report.ratios, key), best,
            metric=report.metric, tolerance=report.tolerance, level=report.level, title=title,
            sizes=sizes, statistic=report.statistic,
            outliers=None if report.outliers is None else report.rows_of(report.outliers, key),
            own_rate=report.own_rate)))
        out.append((f"generations{suffix}", plots.generations_figure(
            report.rows_of(report.curves, key), metric=report.metric, level=report.level, title=title)))
    return out
