"""`madlab report` end to end on the shipped small results set (tests/data): files, numbers, errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import mad
from madlab.cli import main

DATA = Path(__file__).resolve().parent / "data"
SWEEP, RUN = DATA / "small_sweep", DATA / "small_run"
START = 3  # the small set has 6 (sweep) and 8 (run) generations


def report(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(["report", *argv])
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(SWEEP), "--out", str(out), "--start", str(START), "--boot", "200"])
    assert exit_.value.code == 0
    return out


def test_report_writes_figures_and_tables(sweep_report):
    for name in ("figure5.png", "figure5.pdf", "generations.png", "generations.pdf", "configurations.csv",
                 "best_omega.csv", "ratio_curves.csv", "generation_curves.csv", "report.md"):
        path = sweep_report / name
        assert path.exists() and path.stat().st_size > 0, name
    assert (sweep_report / "figure5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (sweep_report / "figure5.pdf").read_bytes()[:5] == b"%PDF-"


def test_report_numbers_equal_the_analysis_functions(sweep_report):
    frame = pd.read_parquet(SWEEP / "results.parquet")
    conv = mad.convergence_table(frame, "w2", start=START, n_boot=200)
    written = pd.read_csv(sweep_report / "configurations.csv")
    assert len(written) == len(conv) == 6
    key = ["n_synth", "omega"]
    merged = written.merge(conv, on=key, suffixes=("_csv", ""))
    for col in ("first", "limit", "ratio", "ratio_lo", "ratio_hi", "drift"):
        np.testing.assert_allclose(merged[f"{col}_csv"], merged[col], rtol=1e-9, err_msg=col)
    assert (merged["status_csv"] == merged["status"]).all()

    best = mad.best_omega(conv)
    written_best = pd.read_csv(sweep_report / "best_omega.csv")
    np.testing.assert_allclose(written_best["best_ratio"], best["best_ratio"], rtol=1e-9)
    np.testing.assert_allclose(written_best["best_omega"], best["best_omega"])
    np.testing.assert_allclose(written_best["standard_ratio"], best["standard_ratio"], rtol=1e-9)
    threshold = mad.prophylactic_threshold(best)
    column = written_best["threshold"]
    assert column.isna().all() if threshold is None else (column == threshold).all()

    # the Markdown table carries the same numbers, rounded to 3 decimals
    text = (sweep_report / "report.md").read_text()
    for r in best.itertuples():
        assert f"| {r.n_synth} | {r.best_omega:.3f} | {r.best_ratio:.3f} |" in text
    assert "Prophylactic threshold" in text


def test_ratio_curves_csv_matches_its_definition(sweep_report):
    frame = pd.read_parquet(SWEEP / "results.parquet")
    frame = frame[(frame["metric"] == "w2") & (frame["n_synth"] == 250) & (frame["omega"] == 3.0)]
    means = frame.groupby("generation")["value"].mean()
    curves = pd.read_csv(sweep_report / "ratio_curves.csv")
    curve = curves[(curves["n_synth"] == 250) & (curves["omega"] == 3.0)].sort_values("generation")
    np.testing.assert_allclose(curve["ratio"], (means / means.loc[1]).to_numpy(), rtol=1e-9)


def test_report_on_a_single_run_directory(tmp_path, capsys):
    code, out, err = report([str(RUN), "--out", str(tmp_path), "--start", "4", "--metric", "fd", "--boot", "100"],
                            capsys)
    assert code == 0, err
    written = pd.read_csv(tmp_path / "configurations.csv")
    assert len(written) == 1 and written["n_synth"].iloc[0] == 250
    frame = pd.read_parquet(RUN / "results.parquet")
    means = frame[frame["metric"] == "fd"].groupby("generation")["value"].mean()
    assert written["ratio"].iloc[0] == pytest.approx(means.loc[4:].mean() / means.loc[1], rel=1e-9)
    assert (tmp_path / "figure5.png").exists()
    assert "MAD summary (fd" in out


def test_report_defaults_to_dir_report(tmp_path, capsys):
    shutil.copytree(RUN, tmp_path / "run")
    code, _, err = report([str(tmp_path / "run"), "--start", "4", "--boot", "50"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "report" / "report.md").exists()


@pytest.mark.parametrize("make, args, message", [
    (lambda d: d / "absent", [], "does not exist"),
    (lambda d: d, [], "holds no results.parquet"),
    (lambda d: (pd.DataFrame({"seed": [], "generation": [], "metric": [], "value": []})
                .to_parquet(d / "results.parquet"), d)[1], [], "holds no rows"),
    (lambda d: SWEEP, ["--metric", "w1"], "no rows for metric 'w1'"),
    (lambda d: SWEEP, ["--start", "20"], "last generation is 6; choose a start between 2 and 5"),
    (lambda d: SWEEP, ["--tolerance", "nan"], "tolerance"),
    (lambda d: SWEEP, ["--level", "1.5"], "level must lie"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, args, message):
    code, _, err = report([str(make(tmp_path)), "--out", str(tmp_path / "out"), *args], capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_report_help_explains_the_options(capsys):
    code, out, _ = report(["--help"], capsys)
    assert code == 0
    for option in ("--out", "--metric", "--start", "--tolerance", "--drift-tolerance", "--level", "--boot", "--sizes"):
        assert option in out


def test_each_family_of_other_options_gets_its_own_figure(tmp_path, capsys):
    from test_mad import flat, table

    frame = pd.concat([table({(125, 0.0): flat(2.0, gens=25), (125, 3.0): flat(1.0, gens=25),
                              (250, 0.0): flat(2.5, gens=25), (250, 3.0): flat(1.5, gens=25)}, n_aux=2000),
                       table({(125, 0.0): flat(2.0, gens=25), (125, 3.0): flat(1.3, gens=25)}, n_aux=500)])
    (tmp_path / "in").mkdir()
    frame.to_parquet(tmp_path / "in" / "results.parquet")
    code, out, err = report([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--boot", "50"], capsys)
    assert code == 0, err
    for stem in ("figure5-n_aux500", "figure5-n_aux2000", "generations-n_aux500"):
        assert (tmp_path / "out" / f"{stem}.png").exists()
    best = pd.read_csv(tmp_path / "out" / "best_omega.csv")
    best = best[best["n_synth"] == 125]
    assert dict(zip(best["n_aux"], best["best_ratio"])) == pytest.approx({500: 1.3, 2000: 1.0})
    assert dict(zip(best["n_aux"], best["threshold"].fillna(-1))) == {500: -1, 2000: 125}
    assert dict(zip(best["n_aux"], best["threshold_status"])) == {500: "none", 2000: "located"}


def test_rows_recorded_before_an_option_existed_are_one_family_with_the_later_ones(tmp_path, capsys):
    """A sweep extended after `precision` was added: its older task files have no such column (a
    null once merged), the newer ones "fp32". One configuration family, not two: a later-added
    option's default is what the older runs did (config.with_later_options)."""
    from test_mad import flat, table

    older = table({(125, 0.0): flat(2.0, gens=25), (125, 3.0): flat(1.0, gens=25)})
    newer = table({(250, 0.0): flat(2.5, gens=25), (250, 3.0): flat(1.5, gens=25)}, precision="fp32")
    assert "precision" not in older.columns
    (tmp_path / "in").mkdir()
    pd.concat([older, newer], ignore_index=True).to_parquet(tmp_path / "in" / "results.parquet")
    code, out, err = report([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--boot", "50"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").glob("figure5*.png")) == ["figure5.png"]
    best = pd.read_csv(tmp_path / "out" / "best_omega.csv")
    assert sorted(best["n_synth"]) == [125, 250] and set(best["threshold_status"]) == {"located"}
    # a bf16 configuration is a different family all the same
    bf16 = table({(125, 0.0): flat(2.0, gens=25), (125, 3.0): flat(1.3, gens=25)}, precision="bf16")
    bf16["run"] += "-bf16"   # its own run id, as RunConfig.run_id gives it
    pd.concat([older, newer, bf16], ignore_index=True).to_parquet(tmp_path / "in" / "results.parquet")
    code, out, err = report([str(tmp_path / "in"), "--out", str(tmp_path / "out2"), "--boot", "50"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out2").glob("figure5*.png")) == [
        "figure5-precisionbf16.png", "figure5-precisionfp32.png"]


def paper_table(**columns):
    from test_mad import flat, table

    return table({(125, 0.0): flat(1.7, gens=25), (125, 3.0): flat(1.0, gens=25),
                  (250, 0.0): flat(2.5, gens=25), (250, 3.0): flat(1.01, gens=25)}, **columns)


@pytest.mark.parametrize("columns, paper", [
    ({"target": "gaussian2d", "backend": "toy-ddpm"}, True),
    ({"target": "gaussian2d", "backend": "gaussian"}, False),     # the closed-form fit is not Figure 5
    ({"backend": "toy-ddpm"}, False),                             # no target column: unknown setting
])
def test_paper_numbers_only_beside_the_papers_setting(tmp_path, capsys, columns, paper):
    (tmp_path / "in").mkdir()
    paper_table(**columns).to_parquet(tmp_path / "in" / "results.parquet")
    code, out, err = report([str(tmp_path / "in"), "--boot", "20"], capsys)
    assert code == 0, err
    text = (tmp_path / "in" / "report" / "report.md").read_text()
    out = " ".join(out.split())
    assert ("paper: about 250" in text) == paper and ("paper: about 250" in out) == paper
    best = pd.read_csv(tmp_path / "in" / "report" / "best_omega.csv")
    assert best["paper_standard"].notna().all() == paper and best["paper_standard"].isna().all() != paper
    # every |D_s| run passes: the threshold is not located, whatever the setting
    assert "none below the largest size run" in text and "none below the largest size run" in out
    assert best["threshold"].isna().all() and (best["threshold_status"] == "above").all()


def test_runs_shorter_than_the_window_use_one_stated_rule(tmp_path, capsys):
    from analysis.report import analyse

    frame = pd.read_parquet(SWEEP / "results.parquet")        # 6 generations: before t = 20
    r = analyse(frame, n_boot=20)
    assert r.start == 3 and "second half of the run" in r.window
    code, out, err = report([str(SWEEP), "--out", str(tmp_path), "--boot", "20"], capsys)
    assert code == 0, err
    assert r.window in " ".join(out.split()) and r.window in (tmp_path / "report.md").read_text()
    assert (pd.read_csv(tmp_path / "configurations.csv")["start"] == 3).all()


def test_ratio_panels_keep_standard_and_best_omega():
    from analysis.plots import pick_omegas, ratio_sizes

    picked = pick_omegas([0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 5], best=3.5, most=6)
    assert len(picked) == 6 and {0.0, 3.5, 5.0} <= set(picked)
    assert ratio_sizes([1000, 250, 500, 125]) == [125, 250]
    assert ratio_sizes([500, 1000]) == [500, 1000]


@pytest.mark.parametrize("name, seeds, gens, learner", [
    ("figure5-paper", 1000, 100, "toy-diffusion"),       # the paper's setting at its scale
    ("figure5-sound", 1000, 100, "resmlp-silu"),         # the sound learner's contrast
    ("figure5-sound-quick", 5, 25, "resmlp-silu")])
def test_figure5_presets_are_the_papers_grid(name, seeds, gens, learner):
    from madlab import presets

    points = list(presets.load(name).configs())
    grid = {(cfg.loop.n_synth, cfg.algo.omega) for _, cfg in points}
    assert {n for n, _ in grid} == set(mad.PAPER_STANDARD)                 # |D_s| = 125 .. 1000
    assert {0.0, 3.0} <= {w for _, w in grid}                               # standard and w ~ 3
    assert len(grid) == len(points)                                         # full Cartesian grid
    for _, cfg in points:
        o = cfg.validate().flat()
        assert (o["loop"], o["algo"], o["target"], o["n_real"], o["n_aux"], o["epochs"], o["aux_epochs"]) == \
            ("augment", "sims", "gaussian2d", 1000, 2000, 100, 50)
        assert (o["seeds"], o["gens"], o["learner"]) == (seeds, gens, learner)
        assert o["gens"] > mad.PAPER_START   # `madlab report` works with its default window


def test_the_quick_preset_runs_the_papers_setting_standard_against_sims():
    from madlab import presets

    configs = [cfg.validate().flat() for _, cfg in presets.load("figure5-quick").configs()]
    assert {(o["n_synth"], o["omega"]) for o in configs} == {(250, 0.0), (250, 3.0), (1000, 0.0), (1000, 3.0)}
    for o in configs:
        assert (o["learner"], o["standardize"], o["warm_start"], o["loop"], o["target"]) == \
            ("toy-diffusion", False, False, "augment", "gaussian2d")
        assert (o["n_real"], o["n_aux"], o["epochs"], o["aux_epochs"]) == (1000, 2000, 100, 50)
        assert o["gens"] > mad.PAPER_START


def test_report_reads_the_finished_tasks_of_a_running_sweep(tmp_path, capsys):
    frame = pd.read_parquet(SWEEP / "results.parquet")
    (tmp_path / "tasks").mkdir()
    for i, (_, part) in enumerate(frame.groupby("run")):
        part.to_parquet(tmp_path / "tasks" / f"t{i}.parquet")
    code, _, err = report([str(tmp_path), "--start", str(START), "--boot", "50"], capsys)
    assert code == 0, err
    assert "reading its 6 finished task files" in err
    assert len(pd.read_csv(tmp_path / "report" / "configurations.csv")) == 6


def far_seed_dir(tmp_path) -> Path:
    """A results table where five of twenty seeds are decided by far samples (mean ratio 3.5,
    median 1), with outlier_share rows: 0.02 for those seeds from generation 2 on, 0 elsewhere."""
    from test_mad import far_seed_table

    frame = far_seed_table()
    share = frame.assign(metric="outlier_share",
                         value=np.where((frame["seed"] >= 15) & (frame["generation"] >= 2), 0.02, 0.0))
    directory = tmp_path / "far"
    directory.mkdir()
    pd.concat([frame, share], ignore_index=True).to_parquet(directory / "results.parquet")
    return directory


def test_the_statistic_decides_the_classification_and_the_other_is_beside_it(tmp_path, capsys):
    directory = far_seed_dir(tmp_path)
    code, out, err = report([str(directory), "--out", str(tmp_path / "mean"), "--boot", "100"], capsys)
    assert code == 0, err
    assert "statistic over seeds: mean" in out and "(mean)" in out and "(median)" in out
    code, out, err = report([str(directory), "--out", str(tmp_path / "median"), "--boot", "100",
                             "--statistic", "median"], capsys)
    assert code == 0, err
    assert "statistic over seeds: median" in out
    by_mean = pd.read_csv(tmp_path / "mean" / "configurations.csv").iloc[0]
    by_median = pd.read_csv(tmp_path / "median" / "configurations.csv").iloc[0]
    assert (by_mean["status"], by_median["status"]) == ("MAD", "prevented")
    assert by_mean["ratio"] == pytest.approx(3.5) and by_mean["median_ratio"] == pytest.approx(1.0)
    best = pd.read_csv(tmp_path / "median" / "best_omega.csv").iloc[0]
    assert best["statistic"] == "median" and best["best_status"] == "prevented"
    assert best["mean_best_status"] == "MAD" and best["median_threshold_status"] == "above"
    text = (tmp_path / "median" / "report.md").read_text()
    assert "**Statistic over seeds: median**" in text and "by the mean: none" in text
    code, _, err = report([str(directory), "--statistic", "mode", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "unknown statistic 'mode'" in err and err.count("\n") == 1


def test_the_outlier_share_gets_columns_a_table_and_a_panel(tmp_path, capsys):
    from analysis.report import OWN_RATE, analyse, figures

    directory = far_seed_dir(tmp_path)
    code, out, err = report([str(directory), "--out", str(tmp_path / "r"), "--boot", "50"], capsys)
    assert code == 0, err
    conv = pd.read_csv(tmp_path / "r" / "configurations.csv").iloc[0]
    assert conv["outlier_first"] == 0 and conv["outlier_window"] == pytest.approx(0.02 * 5 / 20)
    curves = pd.read_csv(tmp_path / "r" / "outlier_curves.csv").sort_values("generation")
    np.testing.assert_allclose(curves["mean"], [0.0] + [0.005] * 29)
    assert "outlier share" in out and f"{OWN_RATE:.2g}" in out
    r = analyse(pd.read_parquet(directory / "results.parquet"), start=20, n_boot=20)
    fig = dict(figures(r))["figure5"]
    panel = [ax for ax in fig.axes if "Outlier share" in ax.get_title()]
    assert len(panel) == 1 and any(np.isclose(line.get_ydata()[0], OWN_RATE) for line in panel[0].lines)
    # a table without outlier rows (older runs, --no-tails) has neither
    plain = analyse(pd.read_parquet(SWEEP / "results.parquet"), start=START, n_boot=20)
    assert plain.outliers is None and "outlier_first" not in plain.conv.columns


def test_the_dry_run_names_the_learner_every_configuration_shares():
    from madlab import presets
    from madlab.commands.sweep import fixed_options

    paper = fixed_options(presets.load("figure5-paper").tasks())
    assert paper["learner"] == "toy-diffusion" and "n_synth" not in paper and "omega" not in paper
    assert "learner" not in fixed_options(presets.load("figure5-sound").tasks())   # run's default
