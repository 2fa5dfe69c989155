"""Hostile stops: `madlab run` and `madlab sweep` killed at random points (SIGINT to the process group
as a terminal's Ctrl-C sends it, SIGTERM or SIGKILL to the driver; one process or two workers),
then rerun: the rows are exactly an uninterrupted run's, no generation that was on disk is computed
again, a stop signal gives one line and 128 + N, and no process of the run outlives its driver."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from madlab import store
from madlab.config import RunConfig
from madlab.runner import run_config
from madlab.sweep import load_tasks

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
TIMES = ["time_train_s", "time_synth_s", "time_eval_s"]
KEY = ["run", "seed", "generation", "metric"]
GAUSS = dict(backend="gaussian", gens=40, seeds=4, n_real=30, n_synth=12, n_eval=300, metric="w2,fd")
DDPM = dict(backend="toy-ddpm", gens=8, seeds=2, epochs=3, aux_epochs=2, n_real=60, n_synth=20, n_aux=40,
            n_eval=60, T=10, width=16, depth=1, batch_size=32, metric="w2")
GRID = {"omega": [0.0, 2.0], "n_synth": [12, 20]}


def flags(options: dict) -> list[str]:
    return [x for k, v in options.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def command(kind: str, options: dict, out: Path, jobs: int) -> list[str]:
    keep = ["--keep-checkpoints"] if kind == "run" else ["--keep-checkpoints", "true"]
    args = [sys.executable, "-m", "madlab", kind, *flags(options), *keep, "--quiet", "--out", str(out)]
    if kind == "sweep":
        args += [*flags({k: ",".join(map(str, v)) for k, v in GRID.items()}), "--seed-chunk", "2"]
    return args + ["--jobs", str(jobs)]


def expected(kind: str, options: dict) -> pd.DataFrame:
    base = {**options, "metric": options["metric"].split(",")}
    if kind == "run":
        configs = [base]
    else:
        configs = [{**base, "omega": o, "n_synth": n, "seed_chunk": 2} for o in GRID["omega"] for n in GRID["n_synth"]]
    return pd.concat([run_config(RunConfig.from_flat(c)) for c in configs])


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without their timings and `ensemble` (the chunk size: a run's chunks follow --jobs)."""
    return frame.drop(columns=TIMES + ["ensemble"]).sort_values(KEY).reset_index(drop=True)


def group_alive(pgid: int) -> list[str]:
    """The live (not zombie) processes of a process group."""
    out = subprocess.run(["ps", "-o", "pid=,stat=,args=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split()[1][0] != "Z"]


def committed(out: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """Per task: its checkpoint files of committed generations -> (inode, mtime): a rewrite changes both."""
    files = {}
    for task in load_tasks(out)[1]:
        checkpoint = store.TaskCheckpoint(out, task.id)
        last = checkpoint.generations()
        files[task.id] = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in checkpoint.folder.glob("g*")
                          if int(p.name[1:5]) <= last}
    return files


def generations_on_disk(out: Path) -> int:
    try:
        tasks = load_tasks(out)[1]
    except Exception:  # noqa: BLE001 - not written yet
        return 0
    return max((store.TaskCheckpoint(out, t.id).generations() for t in tasks), default=0)


# every signal with one process and with two workers, each backend under every signal once
CASES = [("gaussian", "run", signal.SIGINT, 1), ("gaussian", "sweep", signal.SIGTERM, 2),
         ("gaussian", "sweep", signal.SIGKILL, 2), ("toy-ddpm", "run", signal.SIGKILL, 1),
         ("toy-ddpm", "sweep", signal.SIGINT, 2), ("toy-ddpm", "run", signal.SIGTERM, 2)]


@pytest.mark.parametrize("backend, kind, sig, jobs", CASES,
                         ids=[f"{b}-{k}-{s.name}-jobs{j}" for b, k, s, j in CASES])
def test_killed_at_a_random_point_and_rerun_gives_the_uninterrupted_rows(tmp_path, backend, kind, sig, jobs):
    options = GAUSS if backend == "gaussian" else DDPM
    rng = random.Random(f"{backend}-{kind}-{sig.name}-{jobs}")
    stop_at = rng.randint(1, options["gens"] // 2)              # generations on disk before the signal
    out = tmp_path / "out"
    proc = subprocess.Popen(command(kind, options, out, jobs), env=ENV, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while generations_on_disk(out) < stop_at:
            assert proc.poll() is None, f"finished before generation {stop_at}: {proc.stderr.read()}"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))                         # anywhere inside the next generation
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)                             # Ctrl-C: the terminal signals the group
        else:
            os.kill(proc.pid, sig)                               # the driver only
        _, err = proc.communicate(timeout=600)
        deadline = time.monotonic() + 120
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(proc.pid), group_alive(proc.pid)  # no worker outlives its driver
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 128 + sig), err
    if sig != signal.SIGKILL:
        lines = [line for line in err.splitlines() if not line.startswith("plan:")]
        n = sum(t.config["gens"] if store.task_state(out, t.id) == "done" else
                store.checkpointed_generations(out, t.id) for t in load_tasks(out)[1])
        assert lines == [f"madlab: interrupted after {n} generations of {len(load_tasks(out)[1])} tasks; "
                         "rerun the same command to resume"], err
        assert not list((out / "tasks").glob("*.running"))       # the directory says nothing runs
    before = committed(out)
    assert sum(map(len, before.values())) >= 2 * stop_at          # rows and state of generation stop_at

    again = subprocess.run(command(kind, options, out, jobs), env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    after = committed(out)
    for task, files in before.items():                           # nothing on disk was computed again
        assert {name: after[task][name] for name in files} == files
    got = canonical(pd.read_parquet(out / "results.parquet"))
    pd.testing.assert_frame_equal(got, canonical(expected(kind, options)), check_exact=True)
    assert not got.duplicated(KEY).any()
