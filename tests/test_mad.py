"""analysis.mad on constructed tables whose per-generation means are set, so every answer is known exactly."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import mad

OFFSETS = np.array([-0.3, -0.1, 0.1, 0.3])  # per-seed deviations: mean 0, sample std known


def table(curves: dict, metric: str = "w2", offsets=OFFSETS, **extra) -> pd.DataFrame:
    """Rows for each (n_synth, omega) -> per-generation means m_t; seed k's value is m_t + offsets[k]
    so the mean over seeds is exactly m_t."""
    rows = []
    for (n_synth, omega), means in curves.items():
        for seed, off in enumerate(offsets):
            for t, m in enumerate(means, start=1):
                rows.append({"run": f"r{n_synth}-{omega}", "seed": seed, "generation": t, "metric": metric,
                             "value": m + off, "train_size": 1000 + n_synth, "ensemble": len(offsets),
                             "time_train_s": 0.1, "loop": "augment", "algo": "sims", "omega": omega,
                             "n_synth": n_synth, "time_embedding": "scaled", "metric_set": metric, **extra})
    return pd.DataFrame(rows)


def flat(ratio: float, gens: int = 30, first: float = 0.5) -> list[float]:
    """m_1 = first, then m_t = ratio * first for t >= 2: convergence ratio exactly `ratio`."""
    return [first] + [ratio * first] * (gens - 1)


def test_generation_curves_mean_and_normal_band():
    frame = table({(250, 3.0): [1.0, 2.0, 3.0]})
    curves = mad.generation_curves(frame, level=0.95)
    np.testing.assert_allclose(curves["mean"], [1.0, 2.0, 3.0])
    se = OFFSETS.std(ddof=1) / 2
    np.testing.assert_allclose(curves["se"], se)
    np.testing.assert_allclose(curves["hi"] - curves["mean"], 1.959964 * se, rtol=1e-6)
    assert (curves["seeds"] == 4).all()


def test_ratio_curve_is_mean_over_first_mean_and_band_brackets_it():
    means = [0.5, 0.75, 1.0, 1.25]
    curves = mad.ratio_curves(table({(125, 0.0): means}))
    np.testing.assert_allclose(curves["ratio"], np.array(means) / 0.5)
    assert (curves["lo"] <= curves["ratio"] + 1e-12).all() and (curves["ratio"] <= curves["hi"] + 1e-12).all()
    assert curves["lo"].iloc[0] == pytest.approx(1.0) and curves["hi"].iloc[0] == pytest.approx(1.0)


def test_bands_collapse_without_seed_noise_and_widen_with_it():
    quiet = mad.ratio_curves(table({(125, 0.0): [1.0, 2.0]}, offsets=np.zeros(4)))
    np.testing.assert_allclose(quiet["lo"], quiet["hi"])
    noisy = mad.ratio_curves(table({(125, 0.0): [1.0, 2.0]}))
    assert noisy["hi"].iloc[1] - noisy["lo"].iloc[1] > 0.05


def test_convergence_ratio_averages_generations_start_to_T():
    means = [1.0] + [2.0] * 18 + list(np.linspace(3.0, 4.0, 11))  # t = 20..30 rise 3 -> 4
    conv = mad.convergence_table(table({(250, 0.0): means}), start=20)
    row = conv.iloc[0]
    assert row["first"] == pytest.approx(1.0)
    assert row["limit"] == pytest.approx(3.5)
    assert row["ratio"] == pytest.approx(3.5)
    assert row["last_generation"] == 30 and row["seeds"] == 4
    assert row["ratio_lo"] <= row["ratio"] <= row["ratio_hi"]
    # start is configurable: t = 2..30
    assert mad.convergence_table(table({(250, 0.0): means}), start=2).iloc[0]["ratio"] == pytest.approx(np.mean(means[1:]))


def test_drift_is_late_half_minus_early_half_over_first():
    means = [2.0] + [2.0] * 9 + list(range(10, 20))  # window t = 11..20: 10, 11, ..., 19
    row = mad.convergence_table(table({(125, 0.0): means}), start=11).iloc[0]
    assert row["drift"] == pytest.approx((np.mean(range(15, 20)) - np.mean(range(10, 15))) / 2.0)


@pytest.mark.parametrize("omega, means, status", [
    (0.0, flat(1.0), "prevented"),                                # stays at m_1
    (2.0, flat(0.9), "prevented"),                                # self-improves
    (3.0, flat(1.04), "prevented"),                               # within the tolerance 0.05
    (0.0, flat(9.5), "MAD"),                                      # a standard plateau far above 1
    (1.0, flat(1.3), "mitigated"),                                # above 1, below standard's 9.5
    (4.0, flat(12.0), "MAD"),                                     # above 1 and worse than standard
    (3.0, [0.5] + list(0.5 * np.linspace(1.0, 4.0, 29)), "MAD"),  # keeps increasing
])
def test_status_words_as_the_paper_defines_them(omega, means, status):
    """Paper section 2: MAD when E[dist] rises or standard's band lies above 1; prevented when
    the band holds 1; mitigated when above 1 but below standard training's ratio."""
    frame = table({(250, 0.0): flat(9.5), (250, omega): means})
    conv = mad.convergence_table(frame, start=20)
    assert conv.set_index("omega").loc[omega, "status"] == status


def test_a_band_that_holds_1_is_prevented_and_no_standard_run_means_mad_above_1():
    # four seeds, two stay at 1.0 and two rise to 1.4: the ratio is 1.2, but one resample in
    # sixteen draws only the flat two, so the 95 % band reaches 1
    frame = table({(250, 0.0): [1.0] * 30}, offsets=np.zeros(4))
    frame.loc[(frame["seed"] >= 2) & (frame["generation"] >= 2), "value"] = 1.4
    wide = mad.convergence_table(frame, start=20).iloc[0]
    assert wide["ratio"] == pytest.approx(1.2) and wide["ratio_lo"] == pytest.approx(1.0)
    assert wide["status"] == "prevented"
    # SIMS alone, above 1 with no standard run of its |D_s| to compare with: MAD (Definition 2)
    alone = mad.convergence_table(table({(250, 3.0): flat(1.5)}), start=20).iloc[0]
    assert alone["status"] == "MAD"
    # the comparison is within the same |D_s|: standard at 500 says nothing about 250
    two = mad.convergence_table(table({(500, 0.0): flat(9.0), (250, 3.0): flat(1.5)}), start=20)
    assert two.set_index("n_synth").loc[250, "status"] == "MAD"


def test_classify_rule_edges():
    assert mad.classify(1.05, 1.05, 0.0, tolerance=0.05) == "prevented"
    assert mad.classify(1.0501, 1.0501, 0.0, tolerance=0.05) == "MAD"
    assert mad.classify(1.0501, 1.0501, 0.0, standard_ratio=2.0, tolerance=0.05) == "mitigated"
    assert mad.classify(1.9, 1.8, 0.0, standard_ratio=2.0, hi=2.1) == "MAD"   # band reaches standard's
    assert mad.classify(1.9, 1.8, 0.0, standard_ratio=2.0, is_standard=True) == "MAD"
    assert mad.classify(0.9, 0.9, 0.11, drift_tolerance=0.1) == "MAD"
    assert mad.classify(np.nan, 1.0, 0.0) == "undefined"


PAPER = {**{(n, 0.0): flat(r) for n, r in mad.PAPER_STANDARD.items()},
         **{(n, 3.0): flat(r) for n, r in mad.PAPER_SIMS_BEST.items()},
         **{(n, 5.0): flat(r + 0.2) for n, r in mad.PAPER_SIMS_BEST.items()}}


def test_best_omega_and_threshold_on_the_published_numbers():
    conv = mad.convergence_table(table(PAPER))
    best = mad.best_omega(conv)
    assert list(best["n_synth"]) == [125, 250, 500, 1000]
    assert (best["best_omega"] == 3.0).all()
    np.testing.assert_allclose(best["best_ratio"], list(mad.PAPER_SIMS_BEST.values()))
    np.testing.assert_allclose(best["standard_ratio"], list(mad.PAPER_STANDARD.values()))
    assert (best["omegas"] == 3).all()
    assert list(best["best_status"]) == ["prevented", "prevented", "mitigated", "mitigated"]
    assert list(best["standard_status"]) == ["MAD"] * 4
    assert mad.prophylactic_threshold(best) == mad.PAPER_THRESHOLD == 250
    assert mad.prophylactic_threshold(best, tolerance=0.1) == 500
    assert mad.prophylactic_threshold(best, tolerance=0.25) == 1000
    assert mad.prophylactic_threshold(best, tolerance=0.0) == 125
    assert mad.prophylactic_threshold(best[best["n_synth"] > 125], tolerance=0.0) is None


def test_best_omega_per_family():
    frame = pd.concat([table({(250, 0.0): flat(2.0), (250, 2.0): flat(1.2)}, n_aux=2000),
                       table({(250, 0.0): flat(2.0), (250, 4.0): flat(1.1)}, n_aux=500)])
    confs = mad.configurations(frame)
    assert mad.family_columns(confs) == ["n_aux"]
    best = mad.best_omega(mad.convergence_table(frame), by=["n_aux"])
    assert dict(zip(best["n_aux"], best["best_omega"])) == {500: 4.0, 2000: 2.0}


def test_standard_rows_count_as_omega_zero():
    frame = table({(250, 3.0): flat(2.0)})
    frame["algo"] = "standard"  # the omega column keeps its (irrelevant) value 3
    conv = mad.convergence_table(frame)
    assert conv["omega"].tolist() == [0.0] and conv["algo"].tolist() == ["sims"]


def test_seeds_missing_a_generation_are_left_out():
    frame = table({(125, 0.0): [1.0, 2.0, 2.0]})
    frame = frame[~((frame["seed"] == 0) & (frame["generation"] == 3))]
    conf = mad.configurations(frame)[0]
    assert conf.seeds.tolist() == [1, 2, 3] and conf.values.shape == (3, 3)


def test_timing_columns_are_not_config_but_time_embedding_is():
    cols = mad.config_columns(table({(125, 0.0): [1.0, 2.0]}))
    assert "time_embedding" in cols and "time_train_s" not in cols
    assert not {"run", "seed", "generation", "value", "ensemble", "metric_set"} & set(cols)


def test_metric_selection():
    frame = pd.concat([table({(125, 0.0): [1.0, 2.0, 2.0]}, metric="w2"),
                       table({(125, 0.0): [1.0, 4.0, 4.0]}, metric="fd")])
    assert mad.convergence_table(frame, metric="fd", start=2).iloc[0]["ratio"] == pytest.approx(4.0)
    assert mad.convergence_table(frame, metric="w2", start=2).iloc[0]["ratio"] == pytest.approx(2.0)


@pytest.mark.parametrize("frame, kwargs, message", [
    (pd.DataFrame(), {}, "empty"),
    (table({(125, 0.0): [1.0, 2.0]}), {"metric": "w1"}, "no rows for metric 'w1'"),
    (table({(125, 0.0): [1.0] * 10}), {"start": 20}, "last generation is 10"),
    (table({(125, 0.0): [1.0] * 10}), {"start": 1}, "start must be at least 2"),
])
def test_bad_input_is_a_one_line_value_error(frame, kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        mad.convergence_table(frame, **kwargs)
    assert "\n" not in str(err.value)


def test_missing_generation_one_is_refused():
    frame = table({(125, 0.0): [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="no generation 1"):
        mad.configurations(frame[frame["generation"] > 1])


# --------------------------------------------------------------------------- median over seeds

def test_bootstrap_medians_are_the_medians_of_the_same_resamples():
    rng = np.random.default_rng(3)
    for S in (4, 5):                                       # even and odd numbers of seeds
        values = rng.lognormal(size=(S, 6))
        counts = mad.boot_counts(S, 50, seed=7)
        explicit = np.stack([np.median(np.repeat(values, c, axis=0), axis=0) for c in counts])
        np.testing.assert_allclose(mad.bootstrap_medians(values, 50, seed=7), explicit, rtol=0, atol=0)
        np.testing.assert_allclose(mad.bootstrap_means(values, 50, seed=7),
                                   np.stack([np.repeat(values, c, axis=0).mean(0) for c in counts]))


def test_median_ratio_equals_the_mean_ratio_when_every_seed_agrees():
    frame = table({(250, 0.0): flat(1.8), (250, 2.0): [0.5, 0.6, 0.55, 0.5, 0.52, 0.51]},
                  offsets=np.zeros(4))
    conv = mad.convergence_table(frame, start=3)
    for a, b in [("ratio", "median_ratio"), ("ratio_lo", "median_ratio_lo"), ("ratio_hi", "median_ratio_hi"),
                 ("first", "median_first"), ("drift", "median_drift")]:
        np.testing.assert_allclose(conv[a], conv[b], rtol=1e-12, err_msg=a)
    assert (conv["mean_status"] == conv["median_status"]).all()
    curves = mad.ratio_curves(frame)
    np.testing.assert_allclose(curves["median_ratio"], curves["ratio"])


# twenty seeds: fifteen stay at 1.0, five are decided by far samples from generation 2 on (value 11)
FAR_SEED = {"offsets": np.zeros(20)}


def far_seed_table(far: float = 11.0, omega: float = 0.0, n_synth: int = 250) -> pd.DataFrame:
    frame = table({(n_synth, omega): [1.0] * 30}, **FAR_SEED)
    frame.loc[(frame["seed"] >= 15) & (frame["generation"] >= 2), "value"] = far
    return frame


def test_one_far_seed_moves_the_mean_ratio_not_the_median_and_the_statistic_decides_the_status():
    frame = far_seed_table()
    by_mean = mad.convergence_table(frame, start=20).iloc[0]
    by_median = mad.convergence_table(frame, start=20, statistic="median").iloc[0]
    assert by_mean["ratio"] == pytest.approx((15 + 5 * 11) / 20)   # 3.5: m_t = 3.5, m_1 = 1
    assert by_mean["median_ratio"] == pytest.approx(1.0)           # M_t = 1 throughout
    assert by_mean["ratio_lo"] > 1.05                              # the far seeds are a quarter
    assert by_mean["mean_status"] == "MAD" and by_mean["median_status"] == "prevented"
    assert by_mean["status"] == "MAD" and by_mean["statistic"] == "mean"
    assert by_median["status"] == "prevented" and by_median["statistic"] == "median"
    assert by_median["ratio"] == by_mean["ratio"]                   # both are always there
    with pytest.raises(ValueError, match="unknown statistic 'mode'"):
        mad.convergence_table(frame, start=20, statistic="mode")


def test_best_omega_by_each_statistic():
    # omega 1: one far seed (mean 3.0, median 1.0); omega 2: every seed at 1.3 (both 1.3)
    steady = table({(250, 2.0): [1.0] + [1.3] * 29}, **FAR_SEED)
    frame = pd.concat([far_seed_table(omega=1.0), steady])
    conv = mad.convergence_table(frame, start=20)
    by_mean, by_median = mad.best_omega(conv), mad.best_omega(conv, statistic="median")
    assert by_mean["best_omega"].item() == 2.0 and by_median["best_omega"].item() == 1.0
    for best in (by_mean, by_median):                                 # side by side either way
        assert best["mean_best_omega"].item() == 2.0 and best["median_best_omega"].item() == 1.0
        assert best["median_best_ratio"].item() == pytest.approx(1.0)
    assert mad.prophylactic_threshold(by_median) == 250 and mad.prophylactic_threshold(by_mean) is None


def test_run_summary_gives_both_ratios_with_bands():
    from analysis.summary import run_summary

    agree = run_summary(table({(250, 0.0): [1.0, 2.0, 3.0]}, offsets=np.zeros(4))).iloc[0]
    assert agree["ratio"] == agree["median_ratio"] == pytest.approx(3.0)
    assert agree["ratio_lo"] == agree["median_lo"] == pytest.approx(3.0)
    far = run_summary(far_seed_table()).iloc[0]
    assert far["ratio"] == pytest.approx(3.5) and far["median_ratio"] == pytest.approx(1.0)
    assert far["seeds"] == 20 and far["last"] == pytest.approx(3.5) and far["median_last"] == 1.0
    assert far["median_lo"] <= 1.0 <= far["median_hi"] and far["ratio_lo"] <= 3.5 <= far["ratio_hi"]


def test_threshold_distribution_is_certain_without_seed_noise_and_splits_with_it():
    quiet = mad.threshold_distribution(table(PAPER, offsets=np.zeros(4)))
    assert list(quiet["outcome"]) == ["located"] and quiet["value"].item() == 250
    assert quiet["share"].item() == pytest.approx(1.0)
    # |D_s| = 250's best ratio sits at 1.05 exactly in the middle of seed noise: some resamples
    # pass it, some fail it, and the shares add up to one
    curves = dict(PAPER)
    curves[(250, 3.0)] = flat(1.05)
    noisy = mad.threshold_distribution(table(curves, offsets=np.array([-0.2, -0.1, 0.1, 0.2])))
    assert noisy["share"].sum() == pytest.approx(1.0)
    assert set(noisy["value"].dropna()) <= {125.0, 250.0} and len(noisy) >= 2


def test_sims_against_the_standard_models_first_generation():
    """ratio_standard_first = the SIMS configuration's limit over the omega = 0 configuration's
    E[dist(G^1)] of the same |D_s|: a SIMS arm that self-improves G^1 from 2.0 to 0.5 and ends at
    0.6 has ratio 1.2 against its own G^1 and 0.3 against the standard model's."""
    frame = table({(250, 0.0): flat(1.5, first=2.0), (250, 3.0): flat(1.2, first=0.5),
                   (500, 3.0): flat(1.2, first=0.5)})
    conv = mad.convergence_table(frame, start=20).set_index(["n_synth", "omega"])
    assert conv.loc[(250, 3.0), "ratio"] == pytest.approx(1.2)
    assert conv.loc[(250, 3.0), "ratio_standard_first"] == pytest.approx(0.3)
    assert conv.loc[(250, 0.0), "ratio_standard_first"] == pytest.approx(1.5)   # its own ratio
    assert conv.loc[(250, 3.0), "median_ratio_standard_first"] == pytest.approx(0.3)
    assert np.isnan(conv.loc[(500, 3.0), "ratio_standard_first"])               # no standard run at 500
