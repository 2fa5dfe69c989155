"""Sweeps: grid expansion, stable task ids, one merged table, resume, failures, SIGKILL safety."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from madlab import presets, store
from madlab.cli import main
from madlab.config import ConfigError, RunConfig
from madlab.executors import LocalExecutor
from madlab.runner import run_config
from madlab.sweep import SweepSpec, chunk_tasks, compute_task, open_sweep, parse_values, run_sweep, states

# closed-form backend: a task takes milliseconds
GAUSS = {"backend": "gaussian", "gens": 3, "seeds": 4, "n_real": 50, "n_eval": 60, "metric": ["w2", "fd"]}
# toy DDPM small enough for a task to take well under a second
DDPM = ["--backend", "toy-ddpm", "--gens", "3", "--seeds", "2", "--epochs", "2", "--aux-epochs", "1",
        "--n-real", "50", "--n-eval", "50", "--n-aux", "50", "--T", "10", "--width", "16",
        "--depth", "1", "--batch-size", "32"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
TIMES = ["time_train_s", "time_synth_s", "time_eval_s"]
KEY = ["run", "seed", "generation", "metric"]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without wall-clock columns, in a fixed order."""
    return frame.drop(columns=TIMES).sort_values(KEY).reset_index(drop=True)


def spec(**grid) -> SweepSpec:
    return SweepSpec(name="t", base=dict(GAUSS), grid=grid)


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "madlab", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- grid and task ids

def test_grid_is_the_cartesian_product_chunked_into_seed_tasks():
    s = spec(omega=[0.0, 1.0, 3.0], n_synth=[20, 40])
    s.seed_chunk = 3
    configs = s.configs()
    assert [(p["omega"], p["n_synth"]) for p, _ in configs] == [
        (o, n) for o in (0.0, 1.0, 3.0) for n in (20, 40)]
    tasks = s.tasks()
    assert len(tasks) == 6 * 2                                  # 4 seeds in chunks of 3: 3 + 1
    for _, cfg in configs:
        mine = [t for t in tasks if t.run == cfg.run_id()]
        assert [list(t.seeds()) for t in mine] == [[0, 1, 2], [3]]
    assert len({t.id for t in tasks}) == len(tasks)


def test_task_ids_are_stable_and_do_not_depend_on_how_the_grid_is_written():
    a = spec(omega=[0, 1], n_synth=[20, 40]).tasks()
    b = spec(n_synth=[40, 20], omega=[1.0, 0.0]).tasks()            # other order, floats as floats
    c = SweepSpec.from_dict({"base": {**GAUSS, "n-synth": 20}, "grid": {"omega": [0, 1]}}).tasks()
    assert {t.id for t in a} == {t.id for t in b}
    assert {t.id for t in c} < {t.id for t in a}
    dotted = SweepSpec.from_dict({"base": {**GAUSS, "loop.n_synth": 20}, "grid": {"algo.omega": [0, 1]}})
    assert dotted.base["n_synth"] == 20 and dotted.grid == {"omega": [0.0, 1.0]}   # flat names inside
    assert {t.id for t in dotted.tasks()} == {t.id for t in c}
    # the same configuration run alone (madlab run) makes the same task
    cfg = RunConfig.from_flat(**{**GAUSS, "omega": 1.0, "n_synth": 40}).validate()
    assert chunk_tasks(cfg)[0].id in {t.id for t in a}


def test_command_line_values_are_typed_like_the_run_config():
    assert parse_values("omega", "0,0.5,3") == [0.0, 0.5, 3.0]
    assert parse_values("n_synth", "125, 250") == [125, 250]
    assert parse_values("warm_start", "true,false") == [True, False]
    assert parse_values("metric", "w2,fd") == [["w2", "fd"]]       # a list option is one value
    for name, bad in [("n_synth", "1.5"), ("omega", "strong"), ("warm_start", "maybe")]:
        with pytest.raises(ConfigError):
            parse_values(name, bad)


def test_a_toml_file_and_the_command_line_make_the_same_sweep(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nname = "x"\nseed_chunk = 2\n[base]\nbackend = "gaussian"\ngens = 3\n'
                    'seeds = 4\nn_real = 50\nn_eval = 60\nmetric = ["w2", "fd"]\n'
                    '[grid]\nomega = [0, 1, 3]\nn_synth = [20, 40]\n')
    from_file = SweepSpec.from_toml(path)
    from_cli = SweepSpec().override({k: parse_values(k, v) for k, v in {
        "backend": "gaussian", "gens": "3", "seeds": "4", "n_real": "50", "n_eval": "60",
        "metric": "w2,fd", "omega": "0,1,3", "n_synth": "20,40", "seed_chunk": "2"}.items()})
    assert from_file.name == "x" and len(from_file.tasks()) == 12
    assert [t.id for t in from_file.tasks()] == [t.id for t in from_cli.tasks()]


@pytest.mark.parametrize("text, says", [
    ('[grid]\nomegaa = [1]\n', "unknown option"),
    ('[grid]\nomega = 1\n', "non-empty list"),
    ('[base]\nomega = 1\n[grid]\nomega = [1, 2]\n', "both [base] and [grid]"),
    ('[grid]\nseed_chunk = [1, 2]\n', "cannot be gridded"),
    ('[swep]\nname = "x"\n', "unknown table"),
    ('[grid]\nloop = ["augment", "sideways"]\n', "loop=sideways"),
    ('[grid\n', "not valid TOML"),
])
def test_a_bad_sweep_file_is_one_line_and_exit_two(tmp_path, capsys, text, says):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", str(path), "--out", str(tmp_path / "never")])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert not (tmp_path / "never").exists()


def test_presets_are_packaged_and_an_unknown_one_names_the_available():
    assert "example" in presets.available()
    example = presets.load("example")
    assert example.name == "example" and len(example.tasks()) == 24
    with pytest.raises(ConfigError, match="available: .*example"):
        presets.load("no-such-preset")


# --------------------------------------------------------------------------- one table, resume

def test_the_merged_table_is_the_single_runs_tables_and_chunking_changes_no_number(tmp_path):
    s = spec(omega=[0.0, 3.0], n_synth=[20, 40])
    s.seed_chunk = 3
    counts = run_sweep(tmp_path, open_sweep(tmp_path, s, s.tasks()), LocalExecutor(jobs=1))
    assert counts == {"done": 8, "failed": 0, "pending": 0, "rows": 4 * 4 * 3 * 5, "skipped": 0}  # w2, fd + 3 tail rows
    merged = pd.read_parquet(tmp_path / "results.parquet")
    single = pd.concat([run_config(RunConfig.from_dict(cfg.to_dict())) for _, cfg in s.configs()])
    assert list(merged.columns) == list(single.columns)           # the schema of a single run
    assert canonical(merged.drop(columns="ensemble")).equals(canonical(single.drop(columns="ensemble")))
    assert not merged.duplicated(KEY).any()


def test_rerunning_skips_finished_tasks_and_retries_failed_ones(tmp_path):
    s = spec(omega=[0.0, 3.0])
    tasks = open_sweep(tmp_path, s, s.tasks())
    run_sweep(tmp_path, tasks, LocalExecutor(jobs=1))
    first = pd.read_parquet(tmp_path / "results.parquet")
    stamps = {t.id: store.task_paths(tmp_path, t.id)["done"].stat().st_mtime_ns for t in tasks}
    # task 0 "failed" last time: its rows are gone and its error is on disk
    lost = tasks[0].id
    store.task_paths(tmp_path, lost)["done"].unlink()
    store.write_task_failure(tmp_path, lost, {"error": "RuntimeError: boom"})
    assert states(tmp_path, tasks)[lost] == "failed"
    counts = run_sweep(tmp_path, tasks, LocalExecutor(jobs=1))
    assert counts["done"] == 2 and counts["skipped"] == 1
    assert store.task_paths(tmp_path, tasks[1].id)["done"].stat().st_mtime_ns == stamps[tasks[1].id]
    assert not store.task_paths(tmp_path, lost)["failed"].exists()
    assert canonical(pd.read_parquet(tmp_path / "results.parquet")).equals(canonical(first))


def test_a_failing_task_is_recorded_and_the_others_finish(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")                           # no wrapped error messages
    # |D_s| = 1 in a fully synthetic loop: generation 2 has one point to fit a Gaussian to
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--backend", "gaussian", "--loop", "fully-synthetic", "--gens", "3",
              "--seeds", "2", "--n-eval", "60", "--n-synth", "1,40", "--quiet", "--out", str(tmp_path)])
    assert exit_.value.code == 1
    assert "needs at least 2 points" in capsys.readouterr().err
    status = {s: [] for s in ("done", "failed")}
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    for task in manifest["tasks"]:
        status[store.task_state(tmp_path, task["id"])].append(task["point"]["n_synth"])
    assert status == {"done": [40], "failed": [1]}
    assert set(pd.read_parquet(tmp_path / "results.parquet")["n_synth"]) == {40}
    with pytest.raises(SystemExit):
        main(["status", str(tmp_path)])
    out = capsys.readouterr().out
    assert "1 done, 1 failed, 0 pending" in out and "needs at least 2 points" in out


def test_nan_divergence_is_a_failure_not_a_number(tmp_path):
    # a learning rate of 1e8 sends the DDPM's weights, hence its samples, to NaN
    cfg = RunConfig.from_flat(backend="toy-ddpm", lr=1e8, gens=1, seeds=1, epochs=1, aux_epochs=1, n_real=50,
                    n_eval=50, n_aux=50, n_synth=20, T=10, width=16, depth=1, metric=["fd"]).validate()
    s = SweepSpec(base=cfg.flat())
    counts = run_sweep(tmp_path, open_sweep(tmp_path, s, s.tasks()), LocalExecutor(jobs=1))
    assert counts["failed"] == 1 and counts["rows"] == 0
    failure = store.read_failure(tmp_path, s.tasks()[0].id)
    assert failure["kind"] == "diverged" and "NaN" in failure["error"]


def test_a_different_grid_is_refused_unless_extended(tmp_path):
    s = spec(omega=[0.0, 3.0])
    run_sweep(tmp_path, open_sweep(tmp_path, s, s.tasks()), LocalExecutor(jobs=1))
    before = (tmp_path / "sweep.json").read_bytes()
    bigger = spec(omega=[0.0, 3.0, 5.0])
    with pytest.raises(ConfigError, match="different sweep.*--extend"):
        open_sweep(tmp_path, bigger, bigger.tasks())
    rechunked = spec(omega=[0.0, 3.0])
    rechunked.seed_chunk = 2
    with pytest.raises(ConfigError, match="seed chunk changed"):
        open_sweep(tmp_path, rechunked, rechunked.tasks(), extend=True)
    assert (tmp_path / "sweep.json").read_bytes() == before          # refusals write nothing
    tasks = open_sweep(tmp_path, bigger, bigger.tasks(), extend=True)
    counts = run_sweep(tmp_path, tasks, LocalExecutor(jobs=1))
    assert counts == {"done": 3, "failed": 0, "pending": 0, "rows": 3 * 4 * 3 * 5, "skipped": 2}
    assert sorted(pd.read_parquet(tmp_path / "results.parquet")["omega"].unique()) == [0.0, 3.0, 5.0]


def test_a_run_directory_is_a_one_task_sweep(tmp_path, capsys):
    args = ["--backend", "gaussian", "--gens", "3", "--seeds", "4", "--n-real", "50", "--n-eval",
            "60", "--omega", "1", "--quiet", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        main(["run", *args, "--jobs", "1"])                       # one process: one chunk of seeds
    assert exit_.value.code == 0
    manifest = json.loads((tmp_path / "sweep.json").read_text())
    assert manifest["kind"] == "run" and len(manifest["tasks"]) == 1
    rows = pd.read_parquet(tmp_path / "results.parquet")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", *args])              # the same run as a sweep: a run folder refuses it (issue 25)
    assert exit_.value.code == 2
    assert "is a madlab run folder (made by madlab run); resume it with madlab run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["run", *args, "--jobs", "1"])                       # madlab run resumes it
    assert exit_.value.code == 0
    assert canonical(pd.read_parquet(tmp_path / "results.parquet")).equals(canonical(rows))


# --------------------------------------------------------------------------- SIGKILL mid-way

def test_a_sweep_killed_with_sigkill_and_rerun_loses_and_duplicates_no_row(tmp_path):
    out = tmp_path / "killed"
    args = ["sweep", *DDPM, "--omega", "0,1,3", "--n-synth", "20,40", "--quiet", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "madlab", *args, "--jobs", "2"], env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / "tasks").exists() or not list((out / "tasks").glob("*.parquet")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)                        # the driver, mid-sweep
        proc.wait()
        done_at_kill = len(list((out / "tasks").glob("*.parquet")))
        assert 0 < done_at_kill < 6
        assert not (out / "results.parquet").exists()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)                  # its orphaned pool workers
        except ProcessLookupError:
            pass
    again = cli(*args, "--jobs", "1")                             # the rerun, in one process
    assert again.returncode == 0, again.stderr
    assert "already done before this run" in again.stderr
    resumed = pd.read_parquet(out / "results.parquet")
    assert not resumed.duplicated(KEY).any()
    # the uninterrupted sweep: every configuration run on its own, in one torch thread
    torch.set_num_threads(1)
    expected = []
    for omega in (0.0, 1.0, 3.0):
        for n_synth in (20, 40):
            values = dict(zip([a.lstrip("-").replace("-", "_") for a in DDPM[::2]], DDPM[1::2]))
            cfg = SweepSpec().override({k: parse_values(k, v) for k, v in values.items()}).base
            expected.append(run_config(RunConfig.from_flat(**{**cfg, "omega": omega, "n_synth": n_synth})))
    got, want = canonical(resumed), canonical(pd.concat(expected))
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_status_of_an_unfinished_run_and_sweep(tmp_path, capsys):
    cfg = RunConfig.from_flat(GAUSS).validate()
    run_dir = tmp_path / "run"
    open_sweep(run_dir, SweepSpec(name="r", base=cfg.flat()), chunk_tasks(cfg), kind="run")
    with pytest.raises(SystemExit):
        main(["status", str(run_dir)])
    out = " ".join(capsys.readouterr().out.split())
    assert "run r: 1 task — 0 done, 0 failed, 1 pending" in out
    assert "results: none yet (no task of this run has finished)" in out
    assert "rows" not in out and "sweep" not in out

    s = spec(omega=[0.0, 1.0])
    tasks = open_sweep(tmp_path / "sweep", s, s.tasks())
    frame, _ = compute_task(tasks[0])
    store.write_task_result(tmp_path / "sweep", tasks[0].id, frame)   # finished, not merged yet
    with pytest.raises(SystemExit):
        main(["status", str(tmp_path / "sweep")])
    out = " ".join(capsys.readouterr().out.split())
    assert "sweep t: 2 tasks — 1 done, 0 failed, 1 pending" in out
    assert "results: not merged yet (1 finished task under" in out and "0 rows" not in out


def test_a_directory_of_madlab_0_1_is_refused_in_one_line(tmp_path, capsys):
    old = tmp_path / "old"
    (old / "tasks").mkdir(parents=True)
    flat = {**RunConfig.from_flat(GAUSS).validate().flat(active_only=False), "edm_checkpoints": ""}
    (old / "config.json").write_text(json.dumps({"run": "abc", "madlab": "0.1.0", "config": flat}))
    (old / "sweep.json").write_text(json.dumps({"format": "madlab-sweep/1", "madlab": "0.1.0", "kind": "run",
                                                 "name": "old", "specs": [], "tasks": []}))
    before = sorted(p.name for p in old.rglob("*"))
    for argv in (["run", *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in GAUSS.items()
                               if k != "metric"), []), "--out", str(old)],
                 ["sweep", "--backend", "gaussian", "--omega", "0,1", "--out", str(old)]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1, err
        assert "written by madlab 0.1.0" in err[0] and "choose another --out" in err[0]
    assert sorted(p.name for p in old.rglob("*")) == before


# --------------------------------------------------------------------------- the plan

SMALL = ["--backend", "gaussian", "--omega", "0,1", "--n-synth", "20,40", "--seeds", "4", "--seed-chunk", "2",
         "--gens", "10", "--n-real", "50", "--n-eval", "60", "--metric", "fd"]


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "s"
    result = cli("sweep", *SMALL, "--dry-run", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    text = " ".join(result.stdout.split())
    assert "plan: 8 tasks (4 configurations x 2 seed chunks), 160 seed-generations to run; estimated" in text
    assert "an estimate from a probe here (gaussian" in text and "for generation 2 of 2 seeds" in text
    runs = re.findall(r"\b[0-9a-f]{12}\b", text)
    assert len(runs) == len(set(runs)) == 4                               # one row per configuration


def test_every_sweep_prints_its_plan_and_later_plans_use_the_measured_tasks(tmp_path):
    out = tmp_path / "s"
    first = cli("sweep", *SMALL, "--quiet", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "plan: 8 tasks (4 configurations x 2 seed chunks), 160 seed-generations to run" in first.stderr
    again = cli("sweep", *SMALL, "--omega", "0,1,2", "--dry-run", "--out", str(out))
    text = " ".join(again.stdout.split())
    assert "plan: 12 tasks (6 configurations x 2 seed chunks; 8 already done), 80 seed-generations to run" in text
    assert "an estimate from the timing of 8 finished tasks in" in text and "probe" not in text


def test_a_pending_chunk_is_estimated_at_its_finished_twins_measured_cost(tmp_path):
    from madlab.plan import make_plan, work

    s = spec(n_synth=[20])
    s.seed_chunk = 2
    tasks = open_sweep(tmp_path, s, s.tasks())
    frame, _ = compute_task(tasks[0])
    store.write_task_result(tmp_path, tasks[0].id, frame)
    plan = make_plan(tmp_path, tasks, probe=False)
    measured = frame.drop_duplicates("generation")[TIMES].to_numpy().sum()
    assert plan.seconds(tasks[1]) == pytest.approx(measured)          # same configuration and chunk size
    assert plan.todo() == [tasks[1]] and "the timing of 1 finished task" in plan.basis
    bigger = {**tasks[0].config, "n_synth": 40, "n_real": 100}
    assert work(bigger) > work(tasks[0].config)
    ddpm = RunConfig.from_flat(epochs=10).validate().flat()
    assert work({**ddpm, "algo": "sims"}) > work({**ddpm, "algo": "standard"})
    assert work({**ddpm, "epochs": 20.0}) > work(ddpm)


def test_the_wall_estimate_hands_whole_tasks_to_the_first_free_worker():
    from madlab.plan import makespan

    assert makespan([4.0, 4.0], 2) == 4.0
    assert makespan([1.0, 1.0, 6.0, 1.0], 2) == 7.0       # 1 | 1, then 6 on the first free, 1 on the other
    assert makespan([3.0, 3.0, 3.0], 2) == 6.0            # not 4.5: a task cannot be split
    assert makespan([2.0, 5.0], 1) == 7.0
