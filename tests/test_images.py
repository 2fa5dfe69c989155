"""The image experiments (madlab/experiments/images_*.py) end to end at a tiny size on digits: the
wiring properties that fail if the experiments compute the wrong thing."""
import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("sklearn")

from loops import SeedStreams  # noqa: E402
from madlab.config import ConfigError  # noqa: E402
from madlab.edm.backend import EDMBackend  # noqa: E402
from madlab.experiments import load  # noqa: E402
from madlab.experiments.images import Bench  # noqa: E402

TINY = ["edm.net=tiny", "edm.num_steps=2", "edm.ema_kimg=0", "seeds=1", "n_real=64", "epochs=1",
        "n_eval=32"]


def tiny(name: str, tmp_path, *more: str):
    module = load(name)
    return module, module.Settings.at("smoke", TINY + [f"workdir={tmp_path / 'work'}", *more])


@pytest.fixture(scope="module")
def self_improve(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("self-improve")
    module, s = tiny("images-self-improve", tmp, "n_aux=32", "budgets=1", "omegas=-1,0,1",
                     "omegas_vs_budget=1", "edm.quantize=false")
    return module, s, module.measure(s)


def test_omega_zero_is_the_base_model_and_minus_one_the_auxiliary(self_improve):
    module, s, table = self_improve
    bench = Bench(s, "images-self-improve")          # reads the saved models back from the work folder
    base = bench.backend.load(bench.work / "models" / "seed0-base.pt")
    aux = bench.backend.load(bench.work / "models" / "seed0-aux0.pt")
    g = SeedStreams([0]).keys
    x_base = bench.backend.sample(base, s.evaluation.n_eval, g("eval", 1))
    fid = table[table.metric == "fid"].set_index("omega")["value"]
    assert fid[0.0] == pytest.approx(bench.fid(x_base)["fid"][0], rel=1e-9)   # the base model's samples
    x0 = bench.backend.sample(base, s.evaluation.n_eval, g("eval", 1), guide=aux, omega=0.0)
    assert torch.equal(x0, x_base)                               # bit for bit
    x_aux = bench.backend.sample(aux, s.evaluation.n_eval, g("eval", 1))
    x_m1 = bench.backend.sample(base, s.evaluation.n_eval, g("eval", 1), guide=aux, omega=-1.0)
    torch.testing.assert_close(x_m1, x_aux, atol=1e-4, rtol=0)   # D_base - (D_base - D_aux), rounding only
    assert fid[-1.0] == pytest.approx(bench.fid(x_aux)["fid"][0], rel=1e-4)
    assert not torch.equal(x_aux, x_base)                        # the auxiliary model was fine-tuned


def test_rerun_reads_the_work_folder_and_refuses_other_settings(self_improve, monkeypatch):
    module, s, table = self_improve
    monkeypatch.setattr(EDMBackend, "train", lambda *a, **k: pytest.fail("retrained a finished seed"))
    monkeypatch.setattr(EDMBackend, "sample", lambda *a, **k: pytest.fail("resampled a finished seed"))
    again = module.measure(s)
    pd.testing.assert_frame_equal(again, table, check_dtype=False)
    other = s.assign(["epochs=2"])
    with pytest.raises(ConfigError, match="other settings"):
        module.measure(other)


def test_pollution_scenarios_train_on_the_sets_they_say(tmp_path, monkeypatch):
    module, s = tiny("images-pollution", tmp_path, "pollute_shares=0,0.5", "n_aux=16", "budgets=1",
                     "omegas=1", "n_eval=20")   # sizes all distinct: 64 real, 32 polluting, 16 in S, 20 eval
    trained, sampled = [], []
    train, sample = EDMBackend.train, EDMBackend.sample

    def spy_train(self, model, data, epochs, keys):
        out = train(self, model, data, epochs, keys)
        trained.append((model, data.clone(), epochs, out))
        return out

    def spy_sample(self, model, n, keys, **kw):
        out = sample(self, model, n, keys, **kw)
        sampled.append((model, n, kw.get("guide"), out))
        return out

    monkeypatch.setattr(EDMBackend, "train", spy_train)
    monkeypatch.setattr(EDMBackend, "sample", spy_sample)
    module.measure(s)
    real = Bench(s, "images-pollution").target.sample(s.loop.n_real, SeedStreams([0]).keys("real", 1))
    # 1 ST-I, 2 its auxiliary (on its own samples), 3 ST-P (from scratch), 4 ST-P's auxiliary
    st_i, aux_i, st_p, aux_p = trained
    assert torch.equal(st_i[1], real) and st_i[2] == s.loop.epochs
    n_p = round(0.5 * s.loop.n_real)
    pool = [out for model, n, guide, out in sampled if model is st_i[3] and n == n_p]
    assert len(pool) == 1
    pool = pool[0]
    assert torch.equal(st_p[1], torch.cat([real, pool[:, :n_p]], dim=1))   # D_r ∪ D_p, D_p from ST-I
    assert st_p[2] == pytest.approx(s.loop.epochs * s.loop.n_real / (s.loop.n_real + n_p))  # the same images seen
    assert aux_i[0] is st_i[3] and aux_p[0] is st_p[3]                      # SIMS fine-tunes its own base
    s_p = [out for model, n, guide, out in sampled if model is st_p[3] and n == s.algo.n_aux]
    assert len(s_p) == 1 and torch.equal(aux_p[1], s_p[0])                  # ... on the base's own samples
    guided = {(id(model), id(guide)) for model, n, guide, out in sampled if guide is not None}
    assert guided == {(id(st_i[3]), id(aux_i[3])), (id(st_p[3]), id(aux_p[3]))}


def test_curated_set_has_the_requested_class_mix():
    from madlab.experiments.images_shift import curate, in_group

    labels = torch.tensor([0, 7, 1, 8, 9, 2, 5, 6])
    x = torch.arange(8.0).reshape(8, 1, 1, 1)
    is_a = in_group(labels, [0, 1, 2, 3, 4])
    picked = curate(x, is_a, 2, 3)
    assert picked.flatten().tolist() == [0.0, 2.0, 1.0, 3.0, 4.0]
    assert curate(x, is_a, 4, 1) is None


def test_skewed_auxiliary_set_moves_the_class_share_at_minus_one(tmp_path):
    """S with 90 % zeros (group A = digit 0, about 10 % of digits): the auxiliary model alone
    (w = -1) samples more zeros than the base model (w = 0). (Where w > 0 goes is a result, not
    wiring: on models this undertrained it need not fall.)"""
    module, s = tiny("images-shift", tmp_path, "n_real=256", "epochs=8", "group=0", "n_curated=64",
                     "curated_share=0.9", "aux_epochs=40", "edm.lr=0.01", "n_eval=400",
                     "omegas=-1,0", "metrics=fid_pixels", "edm.num_steps=4")
    table = module.measure(s)
    share = table[table.quantity == "share A"].set_index("omega")["value"]
    assert share[-1.0] > share[0.0] + 0.05


def test_image_loop_arms_and_ratio_curves(tmp_path):
    module, s = tiny("images-loop", tmp_path, "gens=2", "n_synth=16", "n_aux=16", "aux_epochs=1",
                     "omegas=1")
    arms = s.arms()
    assert [(c.loop.kind, c.algo.name, c.algo.omega) for c in arms.values()] == [
        ("augment", "standard", 0.0), ("augment", "sims", 1.0), ("fully-synthetic", "standard", 0.0)]
    result = module.run(s)
    c = result.tables["curves"]
    assert set(c.arm) == set(arms) and (c[c.generation == 1]["ratio"] == 1).all()
    assert np.isfinite(c["fid"]).all()


def test_fid_floor_shrinks_with_n_and_bad_settings_are_one_line(tmp_path):
    module, s = tiny("images-fid", tmp_path, "sizes=50,400", "repeats=3")
    r = module.run(s)
    t = r.table[(r.table.kind == "halves")].set_index(["metric", "n"])["mean"]
    for metric in s.evaluation.metric:
        assert t[(metric, 50)] > t[(metric, 400)] > 0
    with pytest.raises(ConfigError, match="unknown setting 'edm.nett'"):
        s.assign(["edm.nett=small"])
    with pytest.raises(ConfigError, match="metric"):
        s.assign(["metrics=w2"]).validate()


def test_an_npz_of_colour_images_runs_through_the_same_code(tmp_path):
    """A CIFAR-10-shaped .npz (uint8 [M, H, W, 3] under x, labels under y), here 8x8 and 48 images."""
    rng = np.random.default_rng(0)
    path = tmp_path / "colour.npz"
    np.savez(path, x=rng.integers(0, 256, (48, 8, 8, 3), dtype=np.uint8), y=np.arange(48) % 4)
    module, s = tiny("images-self-improve", tmp_path, f"edm.dataset={path}", "edm.fid_features=classifier",
                     "n_real=32", "n_aux=8", "budgets=1", "omegas=0,1", "omegas_vs_budget=1", "n_eval=16")
    result = module.run(s)
    assert result.summary["seeds"].eq(1).all() and np.isfinite(result.summary["mean"]).all()
    assert Bench(s, "images-self-improve").target.event_shape == (3, 8, 8)


def cli(argv, capsys):
    from madlab.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code, capsys.readouterr()


def test_dry_run_counts_the_work_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(EDMBackend, "train", lambda *a, **k: pytest.fail("a dry run trained"))
    code, out = cli(["experiment", "images-self-improve", "--scale", "smoke", "--dry-run",
                     "--out", str(tmp_path / "o")], capsys)
    assert code == 0 and "images trained: 5376" in out.out and "estimated CPU-seconds" in out.out
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,message", [
    (["experiment", "images-shift", "--set", "edm.nett=small"], "unknown setting 'edm.nett'"),
    (["experiment", "images-shift", "--set", "edm.net=huge"], "huge"),
    (["experiment", "images-loop", "--set", "metric=fid_pixels"], "metric=fid"),
    (["experiment", "images-pollution", "--set", "edm.dataset=/nonexistent.npz"], "neither 'digits'"),
    (["experiment", "images-fid", "--device", "tpu"], "unknown device"),
])
def test_image_experiments_bad_input_is_one_line(argv, message, capsys):
    code, out = cli(argv, capsys)
    err = out.err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_two_processes_give_the_one_process_table(tmp_path):
    from madlab.experiments.chunks import run_in_chunks

    module, s = tiny("images-self-improve", tmp_path / "one", "seeds=2", "n_aux=8", "budgets=1",
                     "omegas=0,1", "omegas_vs_budget=1", "n_eval=16", "metrics=fid_pixels")
    one = module.run(s).table
    two = run_in_chunks("images-self-improve", s.assign([f"workdir={tmp_path / 'two'}"]), 2, 1).table
    pd.testing.assert_frame_equal(one, two)


def test_work_folders_of_the_earlier_settings_still_resume(tmp_path):
    """tests/data/experiment-settings-ids.json: the settings-id.json that madlab 1df4a61 (before the
    experiments' settings joined the config tree) wrote for every image experiment and scale, and
    for a smoke scale with many --set keys. images-loop quick and images-fid quick are byte for byte
    the identities of the long runs in progress there (ids 89fd388c0b9f, e3e91de48834). Today's
    settings are the same settings, so such a work folder is accepted and its models and rows are
    reused; other settings are still refused."""
    import json
    from pathlib import Path

    from madlab.experiments.images import claim

    held = json.loads((Path(__file__).parent / "data" / "experiment-settings-ids.json").read_text())
    assert held["images-loop quick"]["id"] == "89fd388c0b9f" and held["images-fid quick"]["id"] == "e3e91de48834"
    extra = ["metrics=fid_pixels", "edm.quantize=false", "seeds=2", "first_seed=5", "device=cpu",
             "edm.sample_batch=7", "edm.checkpoint_dir=x"]
    for key, record in held.items():
        name, scale = key.split()
        cls = load(name).Settings
        s = cls.at("smoke", TINY + extra) if scale == "smoke-tiny" else cls.at(scale)
        s = s.assign(["workdir=/somewhere/work"])
        assert s.identity() == record["settings"], key
        work = tmp_path / key.replace(" ", "-")
        work.mkdir()
        (work / "settings-id.json").write_text(json.dumps(record, indent=2) + "\n")
        claim(work, s.identity())                                   # accepted: resumes
        with pytest.raises(ConfigError, match="other settings"):
            claim(work, s.assign(["n_real=7"]).identity())
