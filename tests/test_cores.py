"""madlab run and madlab experiment on every usable core: the layout rule, and the same numbers
from any number of processes (issue 15)."""
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from madlab import cores
from madlab.config import ConfigError
from madlab.experiments import landscape, pollution, shift
from madlab.experiments.chunks import interleave, run_in_chunks, seed_chunks

TINY = ["--gens", "2", "--seeds", "4", "--n-real", "64", "--n-synth", "16", "--n-aux", "64",
        "--n-eval", "64", "--epochs", "2", "--aux-epochs", "1", "--T", "10", "--width", "16",
        "--depth", "1", "--batch-size", "32", "--metric", "w2,fd", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
KEYS = ["seed", "generation", "metric"]


def madlab(*args):
    return subprocess.run([sys.executable, "-m", "madlab", *args], capture_output=True, text=True,
                          env=ENV, timeout=600)


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


# ------------------------------------------------------------------ the layout rule
def test_usable_cores_are_the_affinity_not_the_machine(four_cores, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert cores.usable_cores() == 4


def test_usable_cores_without_affinity_fall_back_to_the_machine(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert cores.usable_cores() == 3


def test_one_process_per_usable_core_one_thread_each(four_cores):
    assert cores.layout(16) == (4, 1, 4)              # the default: every core, one thread each
    assert cores.layout(17) == (4, 1, 5)
    assert cores.layout(3) == (3, 1, 1)               # never more processes than seeds
    assert cores.layout(16, jobs=1) == (1, 1, 16)     # --jobs 1: one process, one thread
    assert cores.layout(16, jobs=8) == (8, 1, 2)      # more than the cores, if asked for
    assert cores.layout(16, jobs=2, threads=2) == (2, 2, 8)
    processes, threads, _ = cores.layout(1000)
    assert processes * threads <= cores.usable_cores()  # no oversubscription by default


def test_a_gpu_run_is_one_process_with_the_cores_as_host_threads(four_cores):
    assert cores.layout(16, device="cuda") == (1, 4, 16)
    assert cores.layout(16, jobs=4, device="cuda:1") == (1, 4, 16)
    assert cores.layout(16, device="cuda", threads=2) == (1, 2, 16)


@pytest.mark.parametrize("kwargs, says", [(dict(jobs=0), "--jobs must be at least 1"),
                                          (dict(threads=0), "--threads must be at least 1")])
def test_bad_jobs_or_threads_are_refused(kwargs, says):
    with pytest.raises(ConfigError, match=says):
        cores.layout(4, **kwargs)


def test_describe_names_processes_threads_and_cores(four_cores):
    assert cores.describe(2, 1) == "2 processes x 1 thread on 4 usable cores"


# ------------------------------------------------------------------ madlab run --jobs
@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("cores") / "one"
    result = madlab("run", *TINY, "--jobs", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "1 process x 1 thread" in result.stderr
    return pd.read_parquet(out / "results.parquet").sort_values(KEYS, ignore_index=True)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cores") / "two"
    result = madlab("run", *TINY, "--jobs", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, result


def test_run_in_two_processes_gives_the_rows_of_one(one_process, two_processes):
    out, result = two_processes
    assert "plan: 2 tasks (1 configuration x 2 seed chunks)" in result.stderr
    assert "2 processes x 1 thread" in result.stderr
    two = pd.read_parquet(out / "results.parquet").sort_values(KEYS, ignore_index=True)
    assert list(two.columns) == list(one_process.columns)
    timing = [c for c in two.columns if c.startswith("time_")] + ["ensemble"]  # speed, chunk size
    pd.testing.assert_frame_equal(two.drop(columns=timing), one_process.drop(columns=timing),
                                  check_exact=True)
    assert sorted(two.groupby("seed")["ensemble"].first()) == [2, 2, 2, 2]


def test_a_rerun_with_other_jobs_resumes_the_recorded_chunks(one_process, two_processes, tmp_path):
    from madlab.store import task_paths

    out = tmp_path / "resumed"
    shutil.copytree(two_processes[0], out)
    tasks = json.loads((out / "sweep.json").read_text())["tasks"]
    assert [t["config"]["seeds"] for t in tasks] == [2, 2]
    task_paths(out, tasks[1]["id"])["done"].unlink()          # one chunk lost: to be redone
    again = madlab("run", *TINY, "--jobs", "3", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "plan: 2 tasks (1 configuration x 2 seed chunks; 1 already done)" in again.stderr
    assert "1 process x 1 thread" in again.stderr            # one chunk left: one process
    assert [t["id"] for t in json.loads((out / "sweep.json").read_text())["tasks"]] == [t["id"] for t in tasks]
    rows = pd.read_parquet(out / "results.parquet").sort_values(KEYS, ignore_index=True)
    pd.testing.assert_series_equal(rows["value"], one_process["value"], check_exact=True)


def test_run_refuses_bad_jobs_in_one_line(tmp_path):
    result = madlab("run", *TINY, "--jobs", "0", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "--jobs must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r").exists()


def test_progress_counts_the_seed_generations_of_every_worker(two_processes):
    """SeedGenerations reads the workers' progress from disk: finished tasks count whole."""
    from madlab.commands.sweep import SeedGenerations
    from madlab.sweep import load_tasks

    out, _ = two_processes
    _, tasks = load_tasks(out)
    updates = []

    class Bar:
        def update(self, bar_id, completed):
            updates.append(completed)

    with SeedGenerations(out, Bar(), every_s=0.01) as poll:
        assert poll.finished(tasks) == 4 * 2                    # seeds x generations
        poll.start(tasks[:1], bar_id=0)
    assert updates and updates[-1] == 0                          # nothing new since it started


# ------------------------------------------------------------------ madlab experiment --jobs
EXPERIMENTS = {
    landscape: dict(seeds=3, n_real=64, epochs=2, n_aux=64, n_advanced=64, finetune_epochs=1,
                    n_eval=48, omega_a=[-1.0, 0.0], omega_s=[0.0, 1.0]),
    pollution: dict(seeds=3, n_real=64, epochs=2, n_pollute=[16, 32], n_aux=64, budgets=[1.0],
                    omegas=[1.0, 2.0], n_eval=48),
    shift: dict(seeds=3, n_real=64, epochs=2, n_curated=64, aux_epochs=1, n_eval=64, n_ot=32,
                omegas=[-1.0, 0.0, 1.0]),
}


def test_seed_chunks_split_the_seeds_evenly_in_order():
    s = shift.Settings.at().apply({"seeds": 7, "first_seed": 10})
    assert [(c.first_seed, c.seeds) for c in seed_chunks(s, 3)] == [(10, 3), (13, 2), (15, 2)]
    assert [(c.first_seed, c.seeds) for c in seed_chunks(s, 9)] == [(10 + i, 1) for i in range(7)]


def test_interleave_restores_the_one_table_order():
    whole = pd.DataFrame([dict(point=p, q=q, seed=k, value=10 * p + k) for p in range(3)
                          for q in "ab" for k in range(5)])
    parts = [whole[whole.seed.isin(seeds)] for seeds in ([0, 1], [2, 3], [4])]
    pd.testing.assert_frame_equal(interleave([p.reset_index(drop=True) for p in parts]), whole)


@pytest.mark.parametrize("module", list(EXPERIMENTS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_experiment_in_chunks_is_the_one_process_experiment(module):
    s = module.Settings.at().apply(EXPERIMENTS[module])
    one = module.run(s)
    name = "mad-loops" if module.__name__.endswith("mad_loops") else module.__name__.rsplit(".", 1)[-1]
    steps = []
    chunked = run_in_chunks(name, s, processes=2, threads=1, progress=lambda *a: steps.append(a))
    pd.testing.assert_frame_equal(chunked.table, one.table, check_exact=True)
    pd.testing.assert_frame_equal(chunked.summary, one.summary, check_exact=True)
    assert chunked.headline == one.headline and chunked.notes == one.notes
    assert steps[-1][:2] == (1, 1) and "worker processes" in steps[0][2]
