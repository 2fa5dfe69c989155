"""MAD curves, convergence ratios, MAD/mitigated/prevented and the prophylactic threshold (SIMS paper sections 2 and 4.2.1).

All functions are pure: they take the tidy results table (one row per run, seed, generation,
metric; see `madlab.runner.run_config`) and return new pandas tables.

Definitions (m_t = E[dist(G^t, p_r)], the mean over seeds of one configuration at generation t):

- generation curve    m_t with a normal band m_t +- z * SE_t (SE_t = sample std over seeds / sqrt(S),
                      z the normal quantile of `level`, 1.96 for 95 %).
- ratio curve         r_t = m_t / m_1, band = percentile bootstrap over seeds (the seeds are
                      resampled as whole trajectories, so r_t's numerator and denominator stay paired).
- convergence ratio   rho = mean_{t = start..T} m_t / m_1 (the paper's E[dist(G^inf)] / E[dist(G^1)],
                      start = 20, T = 100), with the same bootstrap band.
- drift               delta = (mean of m_t over the last half of the window
                      - mean over the first half) / m_1: how much the curve still rises inside the
                      window, in ratio units (0 for a curve that has plateaued).
- classification (paper section 2: Definition 2 and the mitigation / prevention paragraphs), per
  configuration, from its convergence ratio rho, its bootstrap band [lo, hi] and its drift:
    MAD         the curve still rises at the end of the run (delta > drift_tolerance: E[dist(G^t)]
                increases with t, Definition 2), or the band lies above 1 + tolerance and the
                configuration is standard training (omega = 0) or does no better than it;
    prevented   lo <= 1 + tolerance: the band holds 1 (or lies below it), E[dist(G^inf)] <=
                E[dist(G^1)] cannot be rejected; with tolerance 0.05 the paper's 1.013 prevents
                and its 1.078 does not;
    mitigated   SIMS (omega != 0) whose band lies above 1 + tolerance but below the standard
                ratio of the same |D_s| (hi < rho_standard): bounded above G^1, better than standard.
  Without a standard run of the same |D_s| a band above 1 is MAD (Definition 2). A standard plateau
  far above 1 is therefore MAD (the paper's green curves, "confirming MADness"), never "mitigated".
- median statistic    M_t = median over seeds of dist(G^t, p_r) in place of m_t, everything else the
                      same: median ratio curve M_t / M_1, median convergence ratio mean_{t = start..T}
                      M_t / M_1, median drift, and its classification. A few seeds whose distance is
                      decided by far samples move m_t, not M_t (DESIGN.md section 2). Its bootstrap
                      bands resample the same seed sets as the mean's. Every table carries both;
                      `statistic` ("mean", the paper's E[.], or "median") picks the one that drives
                      `status`, the best omega and the threshold.
- best omega          for each |D_s| (and each other varying option), the omega with the smallest rho.
- prophylactic threshold  the largest |D_s| whose best rho <= 1 + tolerance (None if there is none);
                      it is located only if a larger |D_s| was run and fails (`threshold`). Its
                      uncertainty: the same threshold on each bootstrap resample of the seeds
                      (`threshold_distribution`; the seeds are resampled jointly across
                      configurations, as they share their random streams).
- squared statistic   W2 or W2^2: POT's emd2 with a squared-Euclidean cost returns W2^2, which many
                      papers report as "the Wasserstein distance". `with_squares` adds w2sq (and
                      w2sq_inlier) rows, the square of each seed's w2 (w2_inlier) value, so both
                      ratios E[W2^2(G^inf)] / E[W2^2(G^1)] and E[W2(G^inf)] / E[W2(G^1)] come from
                      the same per-seed rows.

The omega of a row is its `omega` column, except that `algo = standard` rows count as omega = 0 and
as the same algorithm as `sims` (SIMS at omega = 0 is standard training, paper section 4.2.1).

One module above ~400 lines on purpose: every number of the paper's section 2 (curves, ratio,
band, status, best omega, threshold and its bootstrap) reads the same `configurations` and
`bootstrap`, and splitting them would put Definition 2 in two places.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.metrics import SQUARED
from analysis.paper import (BOOT_SEED, DRIFT_TOLERANCE, LEVEL, N_BOOT, PAPER_SETTING,  # noqa: F401
                            PAPER_SIMS_BEST, PAPER_STANDARD, PAPER_START, PAPER_THRESHOLD, TOLERANCE)

# columns of the results table that vary inside one configuration (everything else is config)
ROW_COLUMNS = ("run", "seed", "generation", "metric", "value", "train_size", "ensemble", "metric_set")
TIMING = re.compile(r"time_\w+_s")  # time_train_s, time_eval_s, ... (time_embedding is config)
AXES = ("n_synth", "omega")           # the two axes of Figure 5
STATISTICS = ("mean", "median")       # over seeds, per generation: m_t (the paper's E[.]) or M_t
PREFIX = {"mean": "", "median": "median_"}  # column prefix of each statistic's numbers


@dataclass
class Configuration:
    """One configuration's seed-by-generation matrix of dist(G^t, p_r)."""
    key: dict                 # config column -> value (omega already effective)
    seeds: np.ndarray         # [S] seed ids, complete trajectories only
    generations: np.ndarray   # [G] generation numbers, ascending, starting at 1
    values: np.ndarray        # [S, G] dist(G^t, p_r) per seed and generation


def with_squares(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` plus a w2sq (w2sq_inlier) row beside every w2 (w2_inlier) row, its value squared
    (analysis.metrics.SQUARED); unchanged when it has no w2 rows or already has the squares."""
    if frame is None or "metric" not in frame or "value" not in frame:
        return frame
    present = set(pd.unique(frame["metric"]))
    parts = [frame]
    for name, squared in SQUARED.items():
        if name in present and squared not in present:
            rows = frame[frame["metric"] == name].copy()
            rows["metric"] = squared
            rows["value"] = rows["value"].astype(float) ** 2
            parts.append(rows)
    return frame if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def config_columns(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration (every column but per-row ones and timings)."""
    return [c for c in frame.columns if c not in ROW_COLUMNS and not TIMING.fullmatch(c)]


def metrics(frame: pd.DataFrame) -> list[str]:
    """The distance metrics present in the table, in order of appearance."""
    return list(pd.unique(frame["metric"])) if "metric" in frame else []


def prepare(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of `metric`, with omega made effective (standard = SIMS at omega 0).

    Raises ValueError (one line) for an empty table, missing columns or an absent metric."""
    if frame is None or len(frame) == 0:
        raise ValueError("the results table is empty")
    missing = [c for c in ("seed", "generation", "metric", "value") if c not in frame.columns]
    if missing:
        raise ValueError(f"the results table lacks column(s) {', '.join(missing)}; is it a madlab results table?")
    part = frame[frame["metric"] == metric].copy()
    if part.empty:
        raise ValueError(f"no rows for metric {metric!r}; the table holds {', '.join(map(str, metrics(frame)))}")
    if "algo" in part.columns:
        standard = part["algo"] == "standard"
        if "omega" in part.columns:
            part["omega"] = np.where(standard, 0.0, part["omega"].astype(float))
        part.loc[standard, "algo"] = "sims"
    elif "omega" not in part.columns:
        part["omega"] = 0.0
    if "n_synth" not in part.columns:
        part["n_synth"] = 0
    return part


def configurations(frame: pd.DataFrame, metric: str = "w2") -> list[Configuration]:
    """Split the table into configurations; each holds the seeds that have every generation.

    Rows repeated for the same (configuration, seed, generation) -- e.g. a `standard` run beside a
    SIMS omega = 0 run -- are counted once (the first)."""
    part = prepare(frame, metric)
    keys = config_columns(part)
    out = []
    for key_values, group in part.groupby(keys, sort=True, dropna=False):
        key_values = key_values if isinstance(key_values, tuple) else (key_values,)
        group = group.drop_duplicates(["seed", "generation"])
        wide = group.pivot(index="seed", columns="generation", values="value").sort_index(axis=1)
        wide = wide.dropna(axis=0, how="any")
        if wide.empty:
            continue
        generations = wide.columns.to_numpy(dtype=int)
        if generations[0] != 1:
            raise ValueError(f"configuration {dict(zip(keys, key_values))} has no generation 1; "
                             "ratios are relative to E[dist(G^1)]")
        out.append(Configuration(key=dict(zip(keys, key_values)), seeds=wide.index.to_numpy(),
                                 generations=generations, values=wide.to_numpy(dtype=float)))
    if not out:
        raise ValueError(f"no seed of metric {metric!r} has a complete trajectory")
    return out


def varying(confs: list[Configuration]) -> list[str]:
    """The config columns that take more than one value across the configurations."""
    if not confs:
        return []
    cols = list(confs[0].key)
    return [c for c in cols if len({repr(cf.key[c]) for cf in confs}) > 1]


def family_columns(confs: list[Configuration]) -> list[str]:
    """Varying config columns other than Figure 5's axes |D_s| and omega: each combination of
    their values is one family, drawn as its own Figure 5."""
    return [c for c in varying(confs) if c not in AXES]


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return float(norm.ppf(0.5 + level / 2))


def _window(generations: np.ndarray, start: int) -> np.ndarray:
    """Boolean mask of the convergence window t = start..T; at least two generations."""
    if start < 2:
        raise ValueError(f"start must be at least 2 (generation 1 is the reference), got {start}")
    mask = generations >= start
    if mask.sum() < 2:
        raise ValueError(f"the convergence window starts at generation {start} but the last generation "
                         f"is {generations[-1]}; choose a start <= {generations[-1] - 1}")
    return mask


def check_statistic(statistic: str) -> str:
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {', '.join(STATISTICS)}")
    return statistic


def center(values: np.ndarray, statistic: str = "mean") -> np.ndarray:
    """m_t (mean) or M_t (median) over seeds of `values` [S, G] -> [G]."""
    check_statistic(statistic)
    return values.mean(axis=0) if statistic == "mean" else np.median(values, axis=0)


def boot_counts(S: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """How often each of S seeds is drawn in each of `n_boot` resamplings: [n_boot, S] ints."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot)


def bootstrap_means(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """Means over seeds of `values` [S, G] under `n_boot` resamplings of the seeds -> [n_boot, G].

    Resamples by multinomial counts (memory n_boot x S, not n_boot x S x G)."""
    S = values.shape[0]
    return boot_counts(S, n_boot, seed) @ values / S


def bootstrap_medians(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """Medians over seeds of `values` [S, G] under the same resamplings as `bootstrap_means`
    -> [n_boot, G]: np.median of each resampled set, read off the counts (sorted values, the
    k-th smallest is where the cumulated counts first reach k)."""
    S, G = values.shape
    counts = boot_counts(S, n_boot, seed)
    ks = [(S + 1) // 2] if S % 2 else [S // 2, S // 2 + 1]     # the middle one(s), 1-based
    out = np.empty((counts.shape[0], G))
    for g in range(G):
        order = np.argsort(values[:, g], kind="stable")
        cum = counts[:, order].cumsum(axis=1)                  # [n_boot, S]
        out[:, g] = np.mean([values[order, g][(cum < k).sum(axis=1)] for k in ks], axis=0)
    return out


def bootstrap(values: np.ndarray, statistic: str = "mean", n_boot: int = N_BOOT,
              seed: int = BOOT_SEED) -> np.ndarray:
    """`bootstrap_means` or `bootstrap_medians` of `values` [S, G] -> [n_boot, G]."""
    check_statistic(statistic)
    return (bootstrap_means if statistic == "mean" else bootstrap_medians)(values, n_boot, seed)


def generation_curves(frame: pd.DataFrame, metric: str = "w2", level: float = LEVEL) -> pd.DataFrame:
    """E[dist(G^t)] per configuration and generation: columns = config columns, generation,
    seeds, mean, se, lo, hi (lo/hi = mean -+ z * se), median (M_t, over seeds)."""
    z = _z(level)
    rows = []
    for cf in configurations(frame, metric):
        S = cf.values.shape[0]
        mean = cf.values.mean(axis=0)
        median = np.median(cf.values, axis=0)
        se = cf.values.std(axis=0, ddof=1) / np.sqrt(S) if S > 1 else np.full_like(mean, np.nan)
        for g, m, s, md in zip(cf.generations, mean, se, median):
            rows.append({**cf.key, "generation": int(g), "seeds": S, "mean": m, "se": s,
                         "lo": m - z * s, "hi": m + z * s, "median": md})
    return pd.DataFrame(rows)


def ratio_curves(frame: pd.DataFrame, metric: str = "w2", level: float = LEVEL,
                 n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """E[dist(G^t)] / E[dist(G^1)] per configuration and generation with a bootstrap band, and
    the same for the median over seeds: columns = config columns, generation, seeds, ratio, lo,
    hi, median_ratio, median_lo, median_hi."""
    rows = []
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    for cf in configurations(frame, metric):
        cols = {}
        for statistic in STATISTICS:
            c = center(cf.values, statistic)
            boot = bootstrap(cf.values, statistic, n_boot, seed)
            with np.errstate(divide="ignore", invalid="ignore"):   # E[dist(G^1)] = 0: NaN, not a warning
                lo, hi = np.percentile(boot / boot[:, :1], q, axis=0)
                ratio = c / c[0]
            pre = PREFIX[statistic]
            cols |= {f"{pre}ratio": ratio, f"{pre}lo": lo, f"{pre}hi": hi}
        for i, g in enumerate(cf.generations):
            rows.append({**cf.key, "generation": int(g), "seeds": cf.values.shape[0],
                         **{k: v[i] for k, v in cols.items()}})
    return pd.DataFrame(rows)


def classify(ratio: float, lo: float, drift: float, standard_ratio: float = np.nan,
             is_standard: bool = False, hi: float | None = None, tolerance: float = TOLERANCE,
             drift_tolerance: float = DRIFT_TOLERANCE) -> str:
    """MAD / prevented / mitigated (module docstring) from the convergence ratio, its band
    [lo, hi] (a NaN bound: the ratio itself), the drift and the standard (omega = 0) ratio of the
    same |D_s|; "undefined" when the ratio or drift is not a number (E[dist(G^1)] = 0, e.g. an
    outlier share with no outlier at G^1)."""
    if not (np.isfinite(ratio) and np.isfinite(drift)):
        return "undefined"
    lo = ratio if lo is None or not np.isfinite(lo) else lo
    hi = ratio if hi is None or not np.isfinite(hi) else hi
    if drift > drift_tolerance:
        return "MAD"
    if lo <= 1 + tolerance:
        return "prevented"
    if not is_standard and np.isfinite(standard_ratio) and hi < standard_ratio:
        return "mitigated"
    return "MAD"


def _with_status(rows: list[dict], keys: list[str], tolerance: float,
                 drift_tolerance: float) -> list[dict]:
    """Each row's <stat>_status (classify), comparing SIMS rows with the omega = 0 row that agrees
    with them in every config column `keys` but omega; and <prefix>ratio_standard_first, its
    limit over that row's first (E[dist(G^inf)] against the standard model's E[dist(G^1)]: where
    SIMS ends up against the base it started from, not against its own self-improved G^1)."""
    keys = [k for k in keys if k != "omega"]
    standard = {}
    for row in rows:
        if np.isclose(float(row.get("omega", 0.0)), 0.0):
            standard[tuple(repr(row[k]) for k in keys)] = row
    for row in rows:
        ref = standard.get(tuple(repr(row[k]) for k in keys))
        is_standard = np.isclose(float(row.get("omega", 0.0)), 0.0)
        for stat in STATISTICS:
            pre = PREFIX[stat]
            with np.errstate(divide="ignore", invalid="ignore"):
                row[f"{pre}ratio_standard_first"] = (row[f"{pre}limit"] / ref[f"{pre}first"]
                                                     if ref is not None else np.nan)
            row[f"{stat}_status"] = classify(
                row[f"{pre}ratio"], row[f"{pre}ratio_lo"], row[f"{pre}drift"],
                ref[f"{pre}ratio"] if ref is not None else np.nan, is_standard,
                row[f"{pre}ratio_hi"], tolerance, drift_tolerance)
    return rows


def convergence_table(frame: pd.DataFrame, metric: str = "w2", start: int = PAPER_START,
                      tolerance: float = TOLERANCE, drift_tolerance: float = DRIFT_TOLERANCE,
                      level: float = LEVEL, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      statistic: str = "mean") -> pd.DataFrame:
    """One row per configuration: config columns, seeds, last_generation, start,
    first = E[dist(G^1)] (first_lo, first_hi: normal band), limit = mean of m_t over t = start..T,
    ratio = limit / first (ratio_lo, ratio_hi: bootstrap band), drift, mean_status; the same with
    the median over seeds M_t: median_first, median_limit, median_ratio (median_ratio_lo,
    median_ratio_hi), median_drift, median_status; ratio_standard_first and
    median_ratio_standard_first (limit over the omega = 0 configuration's first, no band;
    `_with_status`); statistic (the one asked for) and status (MAD / mitigated / prevented by that
    statistic; `classify`)."""
    check_statistic(statistic)
    if tolerance < 0 or drift_tolerance < 0:
        raise ValueError("tolerances must be non-negative")
    z = _z(level)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    rows = []
    confs = configurations(frame, metric)
    for cf in confs:
        window = _window(cf.generations, start)
        S = cf.values.shape[0]
        first_se = cf.values[:, 0].std(ddof=1) / np.sqrt(S) if S > 1 else np.nan
        w = np.flatnonzero(window)
        half = len(w) // 2
        row = {**cf.key, "seeds": S, "last_generation": int(cf.generations[-1]), "start": start}
        for stat in STATISTICS:
            c = center(cf.values, stat)
            first, limit = c[0], c[w].mean()
            boot = bootstrap(cf.values, stat, n_boot, seed)
            with np.errstate(divide="ignore", invalid="ignore"):   # E[dist(G^1)] = 0: NaN, not a warning
                ratio = limit / first
                drift = (c[w[-half:]].mean() - c[w[:half]].mean()) / first
                ratio_lo, ratio_hi = np.percentile(boot[:, w].mean(axis=1) / boot[:, 0], q)
            pre = PREFIX[stat]
            row |= {f"{pre}first": first}
            if stat == "mean":
                row |= {"first_lo": first - z * first_se, "first_hi": first + z * first_se}
            row |= {f"{pre}limit": limit, f"{pre}ratio": ratio, f"{pre}ratio_lo": ratio_lo,
                    f"{pre}ratio_hi": ratio_hi, f"{pre}drift": drift}
        rows.append(row)
    rows = _with_status(rows, list(confs[0].key) if confs else [], tolerance, drift_tolerance)
    return pd.DataFrame([{**row, "statistic": statistic, "status": row[f"{statistic}_status"]}
                         for row in rows])


def as_statistic(table: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """`table` (convergence_table or ratio_curves output) with its unprefixed ratio columns
    (first, limit, ratio, ratio_lo, ratio_hi, drift; lo, hi) holding `statistic`'s numbers, for
    code that reads those names (the plots). The median has no normal band for `first`."""
    check_statistic(statistic)
    if statistic == "mean":
        return table
    out = table.copy()
    for col in ("first", "limit", "ratio", "ratio_lo", "ratio_hi", "drift", "lo", "hi"):
        if f"median_{col}" in out.columns:
            out[col] = out[f"median_{col}"]
    for col in ("first_lo", "first_hi"):
        if col in out.columns:
            out[col] = np.nan
    return out


def best_omega(table: pd.DataFrame, by: list[str] | None = None, statistic: str = "mean") -> pd.DataFrame:
    """For each |D_s| (and each value of the `by` columns), the omega with the smallest
    convergence ratio by `statistic`. Input: `convergence_table`'s output. Columns: by...,
    n_synth, statistic, best_omega, best_ratio, best_lo, best_hi, best_status (by `statistic`),
    mean_best_omega, mean_best_ratio, mean_best_lo, mean_best_hi, mean_best_status and the same
    for median_ (each statistic's own best omega, side by side), standard_ratio and
    standard_median_ratio (omega = 0, NaN if not run), standard_status (by `statistic`), omegas
    (how many omegas were compared)."""
    check_statistic(statistic)
    by = list(by or [])
    rows = []
    for key, group in table.groupby(by + ["n_synth"], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(by + ["n_synth"], key)), "statistic": statistic}
        for stat in STATISTICS:
            pre = PREFIX[stat]
            ratios = group[f"{pre}ratio"]
            best = group.loc[ratios.idxmin() if ratios.notna().any() else ratios.index[0]]
            row |= {f"{stat}_best_omega": float(best["omega"]), f"{stat}_best_ratio": float(best[f"{pre}ratio"]),
                    f"{stat}_best_lo": float(best[f"{pre}ratio_lo"]), f"{stat}_best_hi": float(best[f"{pre}ratio_hi"]),
                    f"{stat}_best_status": best[f"{stat}_status"]}
        standard = group[np.isclose(group["omega"].astype(float), 0.0)]
        chosen = {f"best_{k}": row[f"{statistic}_best_{k}"] for k in ("omega", "ratio", "lo", "hi", "status")}
        rows.append({**row, **chosen,
                     "standard_ratio": float(standard["ratio"].iloc[0]) if len(standard) else np.nan,
                     "standard_median_ratio": float(standard["median_ratio"].iloc[0]) if len(standard) else np.nan,
                     "standard_status": standard[f"{statistic}_status"].iloc[0] if len(standard) else "",
                     "omegas": int(group["omega"].nunique())})
    return pd.DataFrame(rows)


def prophylactic_threshold(best: pd.DataFrame, tolerance: float = TOLERANCE) -> float | None:
    """The largest |D_s| whose best convergence ratio is <= 1 + tolerance (`best_omega`'s output
    for one family); None if no |D_s| qualifies."""
    ok = best.loc[best["best_ratio"] <= 1 + tolerance, "n_synth"]
    return None if ok.empty else ok.max().item()


def threshold(best: pd.DataFrame, tolerance: float = TOLERANCE) -> tuple[str, float | None]:
    """The prophylactic threshold of one family (`best_omega`'s output) and whether it was
    located: ("located", |D_s|) when a larger |D_s| run fails the tolerance; ("above", largest
    |D_s| run) when every |D_s| run passes, so the threshold lies above what was run; ("none",
    None) when none passes."""
    passing = prophylactic_threshold(best, tolerance)
    if passing is None:
        return "none", None
    largest = best["n_synth"].max().item()
    return ("above", largest) if passing >= largest else ("located", passing)


def threshold_distribution(frame: pd.DataFrame, metric: str = "w2", start: int = PAPER_START,
                           tolerance: float = TOLERANCE, statistic: str = "mean",
                           by: list[str] | None = None, n_boot: int = N_BOOT,
                           seed: int = BOOT_SEED) -> pd.DataFrame:
    """The prophylactic threshold's uncertainty: `threshold` recomputed on each bootstrap
    resample of the seeds. The resamples are the same seed draws in every configuration of equal
    seed count (`boot_counts` with one generator seed), so a resample is one alternative set of
    seeds run through the whole grid, as the seeds' shared random streams make them.

    Returns one row per family (the `by` columns) and outcome: by..., outcome ("located",
    "above" or "none"), value (the |D_s|, NaN for none), share (of the resamples)."""
    check_statistic(statistic)
    by = list(by or [])
    per_conf = []
    for cf in configurations(frame, metric):
        w = np.flatnonzero(_window(cf.generations, start))
        boot = bootstrap(cf.values, statistic, n_boot, seed)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = boot[:, w].mean(axis=1) / boot[:, 0]
        per_conf.append({**{k: cf.key.get(k) for k in by}, "n_synth": cf.key["n_synth"],
                         "ratios": ratios})
    rows = []
    groups: dict[tuple, list[dict]] = {}
    for item in per_conf:
        groups.setdefault(tuple(repr(item[k]) for k in by), []).append(item)
    for items in groups.values():
        sizes = sorted({float(i["n_synth"]) for i in items})
        best = np.stack([np.nanmin(np.stack([i["ratios"] for i in items if float(i["n_synth"]) == n]), axis=0)
                         for n in sizes])                               # [sizes, n_boot]
        passing = best <= 1 + tolerance
        outcomes = {}
        for b in range(best.shape[1]):
            ok = [n for n, p in zip(sizes, passing[:, b]) if p]
            outcome = ("none", np.nan) if not ok else ("above", sizes[-1]) if max(ok) >= sizes[-1] \
                else ("located", max(ok))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        for (outcome, value), count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
            rows.append({**{k: items[0][k] for k in by}, "outcome": outcome, "value": value,
                         "share": count / best.shape[1]})
    return pd.DataFrame(rows)
