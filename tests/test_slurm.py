"""`--executor slurm` against a real single-node Slurm (tests/slurm_cluster.py): the rows equal the
in-process rows, array throttling is enforced by Slurm, a cancelled task is recorded and
retried, and a driver that dies while its jobs are queued or running never submits a task twice.

Tasks that must stay queued or running while the test acts go through `gated`: it notes each
start, then waits for the test to open its gate, then runs the real task."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from madlab import store
from madlab.executors import TERMINAL, JobBook, SlurmExecutor
from madlab.sweep import SweepSpec, compute_task, execute_task, open_sweep, record, run_sweep
from slurm_cluster import slurm  # noqa: F401 - the session fixture

TESTS = Path(__file__).resolve().parent
GATE = "MADLAB_TEST_GATE"
GAUSS = {"backend": "gaussian", "loop": "fully-synthetic", "gens": 3, "seeds": 3, "n_real": 50,
         "n_eval": 60, "metric": ["w2", "fd"]}
KEY = ["run", "seed", "generation", "metric"]


def spec(n_synth=(20, 30)) -> SweepSpec:
    return SweepSpec(name="s", base=dict(GAUSS), grid={"omega": [0.0, 2.0], "n_synth": list(n_synth)})


def table(out) -> pd.DataFrame:
    frame = pd.read_parquet(Path(out) / "results.parquet")
    return (frame.drop(columns=["time_train_s", "time_synth_s", "time_eval_s"])
            .sort_values(KEY).reset_index(drop=True))


def gated(out: str, task, threads: int = 1) -> dict:
    """A Slurm job's entry point: append this start (job id, restart count) to GATE/<task>.starts,
    wait until GATE/open, GATE/open-<task> or GATE/open-<task>-<restart count> exists, then run
    the task as usual."""
    gate = Path(os.environ[GATE])
    restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    job = f"{os.environ.get('SLURM_ARRAY_JOB_ID', os.environ.get('SLURM_JOB_ID'))}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    with open(gate / f"{task.id}.starts", "a") as f:
        f.write(f"{job}/{restart}\n")
    while not any((gate / name).exists() for name in ("open", f"open-{task.id}", f"open-{task.id}-{restart}")):
        time.sleep(0.1)
    pause = gate / f"pause-{task.id}-{restart}"
    if not pause.exists():
        return execute_task(out, task, threads)
    after = int(pause.read_text())                 # stop for good after this generation

    def progress(done: int, total: int) -> None:
        generation = done // task.config["seeds"]
        with open(gate / f"{task.id}.generations", "a") as f:
            f.write(f"{restart} {generation}\n")
        if generation == after:
            (gate / f"{task.id}.paused").touch()
            while True:                            # until Slurm kills this run (requeue, scancel)
                time.sleep(1)

    store.mark_running(out, task.id)
    return record(Path(out), task, *compute_task(task, threads, progress, out=out))


class Gate:
    def __init__(self, path: Path):
        self.path = path

    def starts(self, task_id: str) -> list[str]:
        f = self.path / f"{task_id}.starts"
        return f.read_text().split() if f.exists() else []

    def started(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.starts"))

    def pause(self, task_id: str, restart: int, after_generation: int) -> None:
        """That run of the task computes up to `after_generation`, notes <task>.paused, then hangs."""
        (self.path / f"pause-{task_id}-{restart}").write_text(str(after_generation))

    def trace(self, task_id: str, restart: int) -> None:
        """That run of the task notes its generations (see `generations`) without stopping."""
        self.pause(task_id, restart, after_generation=-1)

    def generations(self, task_id: str) -> list[tuple[int, int]]:
        """(restart count, generation) for every generation the task's runs reported, in order."""
        f = self.path / f"{task_id}.generations"
        return [tuple(map(int, line.split())) for line in f.read_text().splitlines()] if f.exists() else []

    def open(self, task_id: str | None = None, restart: int | None = None) -> None:
        """Open the gate for every task, one task, or one task's given restart (Slurm requeue)."""
        name = "open" if task_id is None else f"open-{task_id}" + ("" if restart is None else f"-{restart}")
        (self.path / name).touch()


@pytest.fixture
def gate(tmp_path, monkeypatch) -> Gate:
    """A closed gate; the jobs submitted from now on see it and can import this module."""
    path = tmp_path / "gate"
    path.mkdir()
    monkeypatch.setenv(GATE, str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p))
    return Gate(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The sweep run in this process, one task after another."""
    from madlab.executors import LocalExecutor

    out = tmp_path_factory.mktemp("in-process")
    s = spec()
    run_sweep(out, open_sweep(out, s, s.tasks()), LocalExecutor(jobs=1))
    return table(out)


def executor(**kw) -> SlurmExecutor:
    return SlurmExecutor(**{"partition": "debug", "time_min": 5, "poll_s": 0.5, "result_grace_s": 5.0, **kw})


class Background:
    """Run `fn` in a thread; `join()` returns its result or raises its exception."""

    def __init__(self, fn):
        self.result, self.error = None, None

        def body():
            try:
                self.result = fn()
            except BaseException as err:  # noqa: BLE001 - handed to join()
                self.error = err

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self, timeout_s: float = 600):
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"the sweep did not end within {timeout_s} s"
        if self.error is not None:
            raise self.error
        return self.result


def sweep(out, ex) -> dict:
    s = spec()
    return run_sweep(out, open_sweep(out, s, s.tasks()), ex)


def book_when(out, condition) -> JobBook | None:
    book = JobBook.load(out)
    return book if condition(book) else None


def array_elements(cluster, job_ids) -> dict[str, dict]:
    return {j["id"]: j for j in cluster.jobs() if j["id"] in set(job_ids)}


def test_the_sweep_command_on_slurm_matches_in_process(slurm, tmp_path, capfd, caplog):
    from madlab.cli import main

    # n_synth = 1 fails at generation 2 (one point cannot be fitted): a real failing task
    args = ["sweep", "--backend", "gaussian", "--loop", "fully-synthetic", "--gens", "3", "--seeds", "3",
            "--n-real", "50", "--n-eval", "60", "--metric", "w2,fd", "--omega", "0,2", "--n-synth", "1,30",
            "--quiet"]
    codes = {}
    for name, extra in {"local": ["--jobs", "1"],
                        "slurm": ["--executor", "slurm", "--partition", "debug", "--time-min", "5"]}.items():
        with pytest.raises(SystemExit) as exit_:
            main([*args, *extra, "--out", str(tmp_path / name)])
        codes[name] = exit_.value.code
    err = capfd.readouterr().err
    assert codes == {"local": 1, "slurm": 1}                  # the n_synth = 1 tasks fail in both
    assert table(tmp_path / "slurm").equals(table(tmp_path / "local"))
    manifest, _ = json.loads((tmp_path / "slurm" / "sweep.json").read_text()), None
    for task in manifest["tasks"]:
        failure = store.read_failure(tmp_path / "slurm", task["id"])
        assert (failure is not None) == (task["point"]["n_synth"] == 1)
        if failure:
            assert "at least 2 points" in failure["error"] and failure["host"]
    # status from squeue: no sacct warnings (submitit logs them through its logger, whose stream
    # was bound at import, so look at the log records as well as at the captured stderr)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "sacct" not in err + logged and "Bypassing" not in err + logged
    book = JobBook.load(tmp_path / "slurm")                    # one array, one job per task
    assert len(book.submissions) == 1 and len(set(book.submissions[0]["jobs"])) == 4


def test_array_parallelism_is_enforced_by_slurm(slurm, tmp_path, gate, reference):
    out = tmp_path / "sweep"
    run = Background(lambda: sweep(out, executor(array_parallelism=2, target=gated)))
    slurm.wait_until(lambda: len(gate.started()) >= 2, "two tasks to start")
    jobs = slurm.wait_until(lambda: JobBook.load(out).submissions[0]["jobs"], "the job ids")

    def throttled():
        states = array_elements(slurm, jobs)
        running = [j for j in states.values() if j["state"] == "RUNNING"]
        held = [j for j in states.values() if j["state"] == "PENDING" and j["reason"] == "JobArrayTaskLimit"]
        return (running, held) if len(running) == 2 and len(held) == 2 else None

    running, held = slurm.wait_until(throttled, "2 running and 2 pending elements held by JobArrayTaskLimit")
    assert slurm.cpus >= 4                                     # without the throttle all four could run
    most = [0]
    watching = threading.Event()

    def watch():
        while not watching.is_set():
            states = array_elements(slurm, jobs).values()
            most[0] = max(most[0], sum(j["state"] == "RUNNING" for j in states))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    gate.open()
    counts = run.join()
    watching.set()
    watcher.join()
    assert counts["done"] == 4 and counts["failed"] == 0
    assert 1 <= most[0] <= 2
    assert table(out).equals(reference)
    assert all(len(gate.starts(t)) == 1 for t in gate.started()) and len(gate.started()) == 4


def test_a_cancelled_task_is_recorded_as_failed_and_retried_on_rerun(slurm, tmp_path, gate, reference):
    out = tmp_path / "sweep"
    tasks = spec().tasks()
    victim = tasks[1]
    for task in tasks:
        if task is not victim:
            gate.open(task.id)
    run = Background(lambda: sweep(out, executor(target=gated)))
    slurm.wait_until(lambda: gate.starts(victim.id), "the victim task to start")
    book = JobBook.load(out)
    job = book.job_of(victim.id)
    slurm.cmd("scancel", job)
    counts = run.join()
    assert counts["done"] == 3 and counts["failed"] == 1
    failure = store.read_failure(out, victim.id)
    assert failure["kind"] == "crashed" and f"slurm job {job} ended CANCELLED" in failure["error"]
    assert store.task_state(out, victim.id) == "failed"

    gate.open()
    counts = sweep(out, executor(target=gated))               # the rerun retries only the victim
    assert counts == {"done": 4, "failed": 0, "pending": 0, "rows": len(reference), "skipped": 3}
    assert len(gate.starts(victim.id)) == 2 and all(len(gate.starts(t.id)) == 1 for t in tasks if t is not victim)
    assert store.read_failure(out, victim.id) is None
    assert table(out).equals(reference)


DRIVER = """
import sys
sys.path.insert(0, {tests!r})
from test_slurm import executor, gated, spec
from madlab.sweep import open_sweep, run_sweep
s = spec()
out = {out!r}
run_sweep(out, open_sweep(out, s, s.tasks()), executor(array_parallelism=2, target=gated))
"""


def test_a_killed_driver_rerun_waits_for_its_queued_jobs_instead_of_resubmitting(slurm, tmp_path, gate, reference):
    out = tmp_path / "sweep"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=str(TESTS), out=str(out))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        slurm.wait_until(lambda: len(gate.started()) >= 2, "two tasks to start")
        jobs = slurm.wait_until(lambda: JobBook.load(out).submissions[0]["jobs"], "the job ids")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    states = array_elements(slurm, jobs)
    assert sorted(j["state"] for j in states.values()) == ["PENDING", "PENDING", "RUNNING", "RUNNING"]
    tasks = JobBook.load(out).submissions[0]["tasks"]
    lost = next(t for t, j in zip(tasks, jobs) if states[j]["state"] == "PENDING")
    lost_job = jobs[tasks.index(lost)]
    slurm.cmd("scancel", lost_job)                            # gone without a result: resubmit it alone
    slurm.wait_until(lambda: lost_job not in array_elements(slurm, [lost_job]), "the cancelled element to vanish")

    rerun = Background(lambda: sweep(out, executor(array_parallelism=2, target=gated)))
    book = slurm.wait_until(lambda: book_when(out, lambda b: len(b.submissions) == 2 and b.submissions[1]["jobs"]),
                            "the rerun's resubmission")
    assert book.submissions[1]["tasks"] == [lost]              # only the task whose job was gone
    gate.open()
    counts = rerun.join()
    assert counts["done"] == 4 and counts["failed"] == 0 and counts["skipped"] == 0
    assert {t: len(gate.starts(t)) for t in tasks} == {t: 1 for t in tasks}   # every task ran once
    assert table(out).equals(reference)


def test_a_driver_that_dies_right_after_sbatch_finds_its_jobs_by_their_comment(slurm, tmp_path, gate,
                                                                               reference, monkeypatch):
    out = tmp_path / "sweep"

    def die(self, token, job_ids):
        raise KeyboardInterrupt("the driver died before it wrote the job ids")

    with monkeypatch.context() as m:
        m.setattr(JobBook, "set_jobs", die)
        with pytest.raises(KeyboardInterrupt):
            sweep(out, executor(array_parallelism=2, target=gated))
    [submission] = JobBook.load(out).submissions
    assert submission["jobs"] is None                          # sbatch ran, its ids were never written
    rerun = Background(lambda: sweep(out, executor(array_parallelism=2, target=gated)))
    book = slurm.wait_until(lambda: book_when(out, lambda b: b.submissions[0]["jobs"]),
                            "the rerun to find the jobs by their comment")
    gate.open()
    counts = rerun.join()
    assert len(book.submissions) == 1 and len(JobBook.load(out).submissions) == 1   # nothing resubmitted
    assert counts["done"] == 4 and counts["failed"] == 0
    tasks = submission["tasks"]
    assert {t: len(gate.starts(t)) for t in tasks} == {t: 1 for t in tasks}
    assert table(out).equals(reference)


def stop_after_generation_2(slurm, gate, out, victim, reference, *command) -> None:
    """Run the sweep with `victim` paused after its generation 2, hit that task's job with
    `command` + job id (a requeue, a signal), and check that the sweep ends with every task done
    and the victim started twice under the same job id."""
    gate.open()
    gate.pause(victim.id, restart=0, after_generation=2)     # the first run stops after generation 2
    gate.trace(victim.id, restart=1)
    run = Background(lambda: sweep(out, executor(target=gated)))
    slurm.wait_until(lambda: (gate.path / f"{victim.id}.paused").exists(), "generation 2 of the task")
    job = JobBook.load(out).job_of(victim.id)
    slurm.cmd(*command, job)
    counts = run.join()
    assert counts == {"done": 4, "failed": 0, "pending": 0, "rows": len(reference), "skipped": 0}
    assert gate.starts(victim.id) == [f"{job}/0", f"{job}/1"]   # the same job, run twice


def test_a_requeued_running_task_is_rerun_by_slurm_and_the_sweep_ends_with_the_uninterrupted_rows(
        slurm, tmp_path, gate, reference):
    """`scontrol requeue` (what preemption with PreemptMode=REQUEUE does) kills a running task's
    job and queues it again under the same id: the driver keeps waiting (PENDING is live), the
    second run records the task, nothing is recorded as failed, and it resumes from the task's last
    checkpointed generation: at most the generation in flight is computed again."""
    out = tmp_path / "sweep"
    victim = spec().tasks()[0]
    stop_after_generation_2(slurm, gate, out, victim, reference, "scontrol", "requeue")
    generations = gate.generations(victim.id)
    assert generations[:2] == [(0, 1), (0, 2)] and (0, 3) not in generations   # requeued mid-task
    assert [g for r, g in generations if r == 1][-1] == GAUSS["gens"]
    assert [g for r, g in generations if r == 1][0] >= 2        # resumed: at most one recomputed
    assert [g for r, g in generations if r == 1] == [3]          # (generation 2 was on disk)
    assert store.read_failure(out, victim.id) is None
    assert len(JobBook.load(out).submissions) == 1
    assert table(out).equals(reference)


def test_a_task_signalled_before_its_time_limit_checkpoints_requeues_and_resumes(slurm, tmp_path, gate, reference):
    """USR2 is what a Slurm job receives before its time limit (submitit asks for it) or before
    preemption: the task, a submitit Checkpointable, is requeued under the same job id by submitit
    itself and continues after its last checkpointed generation; the sweep ends with the
    uninterrupted rows and nothing recorded as failed."""
    out = tmp_path / "sweep"
    victim = spec().tasks()[1]
    stop_after_generation_2(slurm, gate, out, victim, reference, "scancel", "--signal=USR2")
    assert [g for r, g in gate.generations(victim.id) if r == 1] == [3]
    assert store.read_failure(out, victim.id) is None and len(JobBook.load(out).submissions) == 1
    assert table(out).equals(reference)


def test_ctrl_c_of_the_driver_cancels_the_jobs_and_a_rerun_resumes_them(slurm, tmp_path, gate, reference):
    """The README's policy: a stop signal to the driver scancels the sweep's live jobs (their
    finished generations stay on disk); the rerun resubmits them and they resume."""
    out = tmp_path / "sweep"
    victim = spec().tasks()[0]
    gate.open()
    gate.pause(victim.id, restart=0, after_generation=2)
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=str(TESTS), out=str(out))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    slurm.wait_until(lambda: (gate.path / f"{victim.id}.paused").exists(), "generation 2 of the task")
    job = JobBook.load(out).job_of(victim.id)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=300)
    assert "slurm: cancelled" in err, err
    assert not [j for j in slurm.jobs() if j["id"] == job and j["state"] not in TERMINAL]   # let go of
    assert store.task_state(out, victim.id) == "pending"
    assert store.checkpointed_generations(out, victim.id) == 2
    gate.trace(victim.id, restart=0)                             # the resubmitted job runs through
    counts = sweep(out, executor(target=gated))
    assert counts["done"] == 4 and counts["failed"] == 0
    assert len(JobBook.load(out).submissions) == 2              # the cancelled tasks resubmitted
    assert [g for _, g in gate.generations(victim.id)] == [1, 2, 3]   # the new job went on from 3
    assert table(out).equals(reference)
