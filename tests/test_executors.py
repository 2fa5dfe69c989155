"""Executors: a local process pool, Slurm via submitit's local executor and a real Dask cluster
all produce exactly the in-process rows, record failures, and survive a dying worker."""
import functools
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from madlab import store
from madlab.config import ConfigError
from madlab.executors import DaskExecutor, LocalExecutor, SlurmExecutor, make_executor
from madlab.sweep import SweepSpec, compute_task, execute_task, open_sweep, run_sweep

GAUSS = {"backend": "gaussian", "loop": "fully-synthetic", "gens": 3, "seeds": 3, "n_real": 50,
         "n_eval": 60, "metric": ["w2", "fd"]}
KEY = ["run", "seed", "generation", "metric"]


def sweep_spec(omegas=(0.0, 2.0)) -> SweepSpec:
    # n_synth = 1 fails at generation 2 (one point cannot be fitted): a real failing task
    return SweepSpec(name="x", base=dict(GAUSS), grid={"omega": list(omegas), "n_synth": [1, 30]})


def table(out) -> pd.DataFrame:
    frame = pd.read_parquet(out / "results.parquet")
    return frame.drop(columns=["time_train_s", "time_synth_s", "time_eval_s"]).sort_values(KEY).reset_index(drop=True)


def run(out, executor, omegas=(0.0, 2.0)) -> dict:
    s = sweep_spec(omegas)
    return run_sweep(out, open_sweep(out, s, s.tasks()), executor)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run in this process, one task after another."""
    out = tmp_path_factory.mktemp("in-process")
    counts = run(out, LocalExecutor(jobs=1))
    return out, counts


def check_same_as_reference(out, counts, reference, omegas=(0.0, 2.0)):
    ref_out, _ = reference
    n = len(omegas)
    assert counts == {"done": n, "failed": n, "pending": 0, "rows": n * 3 * 3 * 5, "skipped": 0}  # w2, fd + 3 tail rows
    expected = table(ref_out)
    assert table(out).equals(expected[expected["omega"].isin(omegas)].reset_index(drop=True))
    for task in sweep_spec(omegas).tasks():
        state = store.task_state(out, task.id)
        assert state == ("failed" if task.point["n_synth"] == 1 else "done")
        if state == "failed":
            assert "at least 2 points" in store.read_failure(out, task.id)["error"]


def test_local_process_pool_matches_in_process(tmp_path, reference):
    counts = run(tmp_path, LocalExecutor(jobs=2))
    check_same_as_reference(tmp_path, counts, reference)


def crash_on_omega_two(out, task, threads):
    """A worker entry point whose process dies (as an out-of-memory kill would) on some tasks."""
    if task.point.get("omega") == 2.0:
        os._exit(137)
    return execute_task(out, task, threads)


def test_a_dying_worker_fails_only_its_own_task(tmp_path):
    s = SweepSpec(name="x", base={**GAUSS, "n_synth": 30}, grid={"omega": [0.0, 2.0]})
    tasks = open_sweep(tmp_path, s, s.tasks())
    counts = run_sweep(tmp_path, tasks, LocalExecutor(jobs=2, target=crash_on_omega_two))
    assert counts == {"done": 1, "failed": 1, "pending": 0, "rows": 3 * 3 * 5, "skipped": 0}
    for task in tasks:
        failure = store.read_failure(tmp_path, task.id)
        if task.point["omega"] == 2.0:
            assert failure["kind"] == "crashed" and "worker process died" in failure["error"]
        else:
            assert failure is None and store.task_state(tmp_path, task.id) == "done"


def test_slurm_array_through_submitit_local_executor_matches_in_process(tmp_path, reference):
    pytest.importorskip("submitit")
    counts = run(tmp_path, SlurmExecutor(cluster="local", time_min=5, poll_s=0.5), omegas=(2.0,))
    check_same_as_reference(tmp_path, counts, reference, omegas=(2.0,))
    assert list((tmp_path / "slurm").iterdir())                   # submitit's job folders


def test_dask_cluster_matches_in_process(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        counts = run(tmp_path, DaskExecutor(scheduler=cluster.scheduler_address))
    check_same_as_reference(tmp_path, counts, reference)


def stall_first_try(marks: str, task, threads: int = 1, **where):
    """A dask entry point: the first try of the omega = 2, n_synth = 30 task writes its worker's
    pid to MARKS/<task id>.pid and hangs there (until the test kills that worker process)."""
    mark = Path(marks) / f"{task.id}.pid"
    if task.point == {"omega": 2.0, "n_synth": 30} and not mark.exists():
        mark.write_text(str(os.getpid()))
        time.sleep(3600)
    return compute_task(task, threads, **where)


@pytest.mark.parametrize("allowed_failures", [1, 0], ids=["dask-retries", "killed-worker-recorded"])
def test_a_dask_worker_process_killed_mid_task_loses_and_doubles_no_row(tmp_path, reference, allowed_failures):
    """Real worker processes under nannies: SIGKILL the worker running a task. With retries left,
    the scheduler reruns it on the restarted worker; without, the task is recorded as crashed
    (KilledWorker) and the rerun retries it. Either way the rows end up exactly the in-process ones."""
    distributed = pytest.importorskip("distributed")
    import dask

    marks = tmp_path / "marks"
    marks.mkdir()
    out = tmp_path / "sweep"
    victim = next(t for t in sweep_spec().tasks() if t.point == {"omega": 2.0, "n_synth": 30})
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        executor = DaskExecutor(scheduler=cluster.scheduler_address,
                                target=functools.partial(stall_first_try, str(marks)))
        result = {}
        runner = threading.Thread(target=lambda: result.update(run(out, executor)), daemon=True)
        runner.start()
        mark = marks / f"{victim.id}.pid"
        while not mark.exists() and runner.is_alive():
            time.sleep(0.1)
        os.kill(int(mark.read_text()), signal.SIGKILL)              # the worker process, mid-task
        runner.join(600)
        assert not runner.is_alive()
        if allowed_failures:
            check_same_as_reference(out, result, reference)         # retried on the restarted worker
        else:
            failure = store.read_failure(out, victim.id)
            assert failure["kind"] == "crashed" and "KilledWorker" in failure["error"]
            executor = DaskExecutor(scheduler=cluster.scheduler_address, target=compute_task)
            counts = run(out, executor)                             # the rerun retries it
            assert counts["done"] == 2 and counts["pending"] == 0
            check_same_as_reference(out, {**counts, "skipped": 0}, reference)
    assert store.task_state(out, victim.id) == "done"


@pytest.mark.parametrize("module, extra, name", [("submitit", "slurm", "slurm"),
                                                  ("distributed", "dask", "dask")])
def test_a_missing_cluster_extra_is_named(monkeypatch, module, extra, name):
    monkeypatch.setitem(sys.modules, module, None)               # import raises ImportError
    with pytest.raises(ConfigError, match=rf"pip install 'madlab\[{extra}\]'"):
        make_executor(name, scheduler="tcp://127.0.0.1:8786")


def test_executor_options_are_checked(monkeypatch):
    monkeypatch.setenv("PATH", "")                               # no sbatch here
    with pytest.raises(ConfigError, match="sbatch/srun not found"):
        make_executor("slurm")
    with pytest.raises(ConfigError, match="--scheduler"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="--jobs"):
        make_executor("local", jobs=0)
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("kubernetes")


def test_the_sweep_command_drives_a_dask_scheduler(tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    from madlab.cli import main

    args = ["sweep", "--backend", "gaussian", "--gens", "2", "--seeds", "2", "--n-eval", "40",
            "--omega", "0,1", "--quiet", "--out", str(tmp_path)]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--executor", "dask", "--scheduler", cluster.scheduler_address])
    assert exit_.value.code == 0
    by_dask = table(tmp_path)
    assert len(by_dask) == 2 * 2 * 2 * 3 and set(by_dask["omega"]) == {0.0, 1.0}   # w2 + 2 tail rows
    with pytest.raises(SystemExit) as exit_:                     # same sweep, locally: nothing to do
        main(args)
    assert exit_.value.code == 0 and "2 of them already done" in capsys.readouterr().err
