"""The hostile trials of docs/reliability.md that are not about signals (tests/test_interrupts.py):
each reproduces a defect found against main (e5eb300) or a promise that already held, and checks
the behaviour that is promised now — one line and exit 2 for bad input, one line naming the path
and exit 1 for an environment failure, nothing written by a refusal, never a traceback."""
import io
import os
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from loops.config import LoopConfig
from madlab import store
from madlab.config import ConfigError, RunConfig
from madlab.executors import LocalExecutor
from madlab.runner import run_config
from madlab.sweep import SweepSpec, open_sweep, run_sweep

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
TIMES = ["time_train_s", "time_synth_s", "time_eval_s"]
KEY = ["run", "seed", "generation", "metric"]
GAUSS = ["--backend", "gaussian", "--gens", "4", "--seeds", "2", "--n-real", "30", "--n-eval", "40"]


def cli(*args, cwd=None):
    """`madlab ARGS` in this process (fast: torch is loaded already): its exit status and output."""
    from madlab.cli import main

    err, out, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        os.chdir(cwd or here)
        with redirect_stderr(err), redirect_stdout(out):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as exit_:
                code = exit_.code
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def one_line(result, code: int, *says: str) -> str:
    """The command failed with `code` and exactly one line on stderr that says all of `says`."""
    lines = [l for l in result.stderr.splitlines() if l.strip() and not l.startswith("plan:")]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(s in lines[0] for s in says), lines[0]
    return lines[0]


def canonical(frame):
    return frame.drop(columns=TIMES).sort_values(KEY).reset_index(drop=True)


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != store.LOCK}


# --------------------------------------------------------------------------- 1: workers and the lock

def test_a_workers_lease_ends_when_its_driver_lets_go_of_the_lock(tmp_path):
    assert store.Lease(tmp_path).session is None
    with pytest.raises(store.Abandoned):
        store.Lease(tmp_path).check()                      # nobody holds the lock: never write
    with store.SweepLock(tmp_path):
        lease = store.Lease(tmp_path)
        lease.check()                                       # the driver that started it holds it
    with pytest.raises(store.Abandoned):
        lease.check()                                       # the driver exited
    with store.SweepLock(tmp_path):
        with pytest.raises(store.Abandoned):
            lease.check()                                   # another driver took the directory over


# --------------------------------------------------------------------------- 2: refused --extend

def test_a_refused_extend_while_a_sweep_runs_writes_nothing(tmp_path):
    out = tmp_path / "s"
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", out).returncode == 0
    before = files(out)
    with store.SweepLock(out):                              # a sweep is running there
        refused = cli("sweep", *GAUSS, "--omega", "0,1,2", "--extend", "--quiet", "--out", out)
        one_line(refused, 2, "is being run by another madlab process")
        rerun = cli("run", *GAUSS, "--omega", "1", "--quiet", "--out", tmp_path / "r")
        assert rerun.returncode == 0
        one_line(cli("run", *GAUSS, "--omega", "1", "--quiet", "--out", out), 2)   # a sweep there
    assert files(out) == before                             # the manifest was not rewritten (nor .lock:
                                                            # this test rewrote it, holding the lock)
    again = cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", out)
    assert again.returncode == 0 and "already done before this run" in again.stderr


# --------------------------------------------------------------------------- 3: grid size guard

def test_a_huge_grid_is_refused_with_its_count_before_any_task_is_built(tmp_path):
    sweep = tmp_path / "huge.toml"
    values = lambda n: "[" + ", ".join(str(i + 1) for i in range(n)) + "]"   # noqa: E731
    sweep.write_text(f'[base]\nbackend = "gaussian"\n[grid]\nn_real = {values(100)}\nn_synth = {values(100)}\n'
                     f'n_eval = {values(100)}\nomega = [{", ".join(str(float(i)) for i in range(10))}]\n')
    started = time.monotonic()
    result = cli("sweep", sweep, "--out", tmp_path / "never")
    one_line(result, 2, "10,000,000 tasks", "--max-tasks")
    assert time.monotonic() - started < 60 and not (tmp_path / "never").exists()
    spec = SweepSpec(base={"backend": "gaussian", "seeds": 10}, grid={"omega": [0.0, 1.0, 2.0], "seeds": [3, 5]},
                     seed_chunk=2)
    assert spec.count_tasks() == len(spec.tasks()) == 3 * (2 + 3)
    with pytest.raises(ConfigError, match="15 tasks"):
        spec.tasks(limit=14)
    one_line(cli("sweep", *GAUSS, "--omega", "0,1,2", "--max-tasks", "2", "--out", tmp_path / "x"), 2, "3 tasks")


# --------------------------------------------------------------------------- 4: corrupt task files

def test_a_truncated_or_corrupt_task_file_is_not_done_and_is_computed_again(tmp_path):
    out = tmp_path / "s"
    assert cli("sweep", *GAUSS, "--omega", "0,1,2", "--quiet", "--out", out).returncode == 0
    reference = canonical(pd.read_parquet(out / "results.parquet"))
    first, second, _ = sorted((out / "tasks").glob("*.parquet"))
    first.write_bytes(first.read_bytes()[: first.stat().st_size // 2])       # truncated
    blob = bytearray(second.read_bytes())                                    # a page overwritten
    blob[len(blob) // 3: len(blob) // 3 + 200] = b"\x17" * 200
    second.write_bytes(bytes(blob))
    (out / "results.parquet").write_bytes((out / "results.parquet").read_bytes()[:100])
    status = cli("status", out)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    text = " ".join(status.stdout.split())
    assert "does not read back" in text and ("1 done" in text or "2 done" in text), text
    again = cli("sweep", *GAUSS, "--omega", "0,1,2", "--quiet", "--out", out)
    assert again.returncode == 0, again.stderr
    assert "computing it again" in again.stderr and "Traceback" not in again.stderr
    pd.testing.assert_frame_equal(canonical(pd.read_parquet(out / "results.parquet")), reference, check_exact=True)


# --------------------------------------------------------------------------- 5: one line, never a traceback

@contextmanager
def tmpfs(path: Path, options: str):
    """A small tmpfs mounted at `path` (root only: skips elsewhere); unmounted after."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_an_out_folder_that_cannot_be_written_is_one_line_and_exit_one(tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        for command in ("run", "sweep"):
            result = cli(command, *GAUSS, "--quiet", "--out", ro / "sub" / command)
            one_line(result, 1, str(ro / "sub"), "Read-only file system")


def test_a_full_disk_stops_the_sweep_in_one_line_and_a_rerun_finishes_it(tmp_path):
    reference_dir = tmp_path / "reference"
    args = [*GAUSS, "--gens", "30", "--omega", "0,1,2,3", "--seed-chunk", "1", "--quiet"]
    assert cli("sweep", *args, "--out", reference_dir).returncode == 0
    reference = canonical(pd.read_parquet(reference_dir / "results.parquet"))
    with tmpfs(tmp_path / "disk", "size=2m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (2 * 2**20 - 600 * 2**10))   # leaves about 600 KiB
        for jobs in ("1", "2"):
            full = cli("sweep", *args, "--jobs", jobs, "--out", disk / "s")
            one_line(full, 1, "cannot write", str(disk / "s"), "No space left on device")
            assert not list((disk / "s").rglob("*.tmp")) and not list((disk / "s").rglob("*.running"))
        filler.unlink()
        done = cli("sweep", *args, "--out", disk / "s")
        assert done.returncode == 0, done.stderr
        pd.testing.assert_frame_equal(canonical(pd.read_parquet(disk / "s" / "results.parquet")), reference,
                                      check_exact=True)


def test_report_and_sweep_files_fail_in_one_line(tmp_path):
    out = tmp_path / "run"
    assert cli("run", *GAUSS, "--gens", "5", "--quiet", "--out", out).returncode == 0
    one_line(cli("report", out, "--out", out / "results.parquet"), 2, "is not a folder")
    started = time.monotonic()
    one_line(cli("report", out, "--boot", "1000000000"), 2, "boot")
    assert time.monotonic() - started < 120
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[sweep]\nname = "caf\xe9"\n'.encode("latin-1"))
    one_line(cli("sweep", latin, "--out", tmp_path / "never"), 2, "not UTF-8")
    assert not (tmp_path / "never").exists()


# --------------------------------------------------------------------------- 6: names that leave sweeps/

@pytest.mark.parametrize("name", ["../../etc/evil", "/tmp/evil", "a/b", ".."])
def test_a_sweep_name_that_is_a_path_is_refused(tmp_path, name):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    sweep = tmp_path / "evil.toml"
    sweep.write_text(f'[sweep]\nname = "{name}"\n[base]\nbackend = "gaussian"\ngens = 2\nseeds = 2\n')
    one_line(cli("sweep", sweep, "--quiet", cwd=cwd), 2, "plain folder name")
    assert [p for p in tmp_path.rglob("*") if p.name not in ("a", "b", "evil.toml")] == []


# --------------------------------------------------------------------------- 7: bad input is exit 2

@pytest.mark.parametrize("args, says", [
    (["run", *GAUSS, "--omega", "inf"], "omega must be a finite number"),
    (["run", *GAUSS, "--first-seed", "1e20"], "first-seed"),
    (["run", *GAUSS, "--first-seed", str(10 ** 20)], "below 2^63"),
    (["run", *GAUSS, "--n-real", "1"], "n-real must be at least 2"),
    (["run", *GAUSS, "--algo", "sims", "--n-aux", "1"], "n-aux must be at least 2"),
    (["experiment", "mad-loops", "--scale", "smoke", "--device", "tpu", "--quiet"], "unknown device 'tpu'"),
])
def test_bad_input_is_exit_two(tmp_path, args, says):
    one_line(cli(*args, "--out", tmp_path / "never"), 2, says)
    assert not (tmp_path / "never").exists()


def test_report_options_are_checked_in_one_line(tmp_path):
    short = tmp_path / "short"
    assert cli("run", *GAUSS, "--gens", "2", "--quiet", "--out", short).returncode == 0
    line = one_line(cli("report", short), 2, "generation 2")
    assert "<= 1" not in line                                 # never 'choose a start <= 1'
    longer = tmp_path / "longer"
    assert cli("run", *GAUSS, "--gens", "5", "--quiet", "--out", longer).returncode == 0
    for option in ("--tolerance", "--drift-tolerance"):
        one_line(cli("report", longer, option, "nan"), 2, "tolerance")


# --------------------------------------------------------------------------- 8: warnings reach the user

def test_the_missing_compiler_warning_reaches_the_user(tmp_path):
    args = ["run", "--backend", "toy-ddpm", "--learner", "resmlp-sin",   # a learner with fused kernels
            "--gens", "1", "--seeds", "1", "--epochs", "1", "--aux-epochs", "1",
            "--n-real", "40", "--n-eval", "40", "--n-aux", "20", "--T", "5", "--width", "8", "--quiet",
            "--out", str(tmp_path / "run")]
    result = subprocess.run([sys.executable, "-m", "madlab", *args], capture_output=True, text=True, timeout=600,
                            env={**ENV, "CC": "/nonexistent", "MADLAB_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "fused CPU kernels unavailable" in result.stderr and "/nonexistent" in result.stderr


# --------------------------------------------------------------------------- 9: more seeds with --extend

def test_extending_a_sweep_with_more_seeds_runs_only_the_new_seeds(tmp_path):
    out = tmp_path / "s"
    args = [*GAUSS, "--omega", "0,1", "--quiet", "--out", out]
    assert cli("sweep", *args, "--seeds", "4").returncode == 0
    before = canonical(pd.read_parquet(out / "results.parquet"))
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.parquet")}
    assert cli("sweep", *args, "--seeds", "6", "--extend").returncode == 0
    after = pd.read_parquet(out / "results.parquet")
    options = ["omega", "seed", "generation", "metric"]
    assert not after.duplicated(options).any()               # the README's groupby counts each once
    assert sorted(after["seed"].unique()) == list(range(6))
    old = canonical(after[after["seed"] < 4])
    pd.testing.assert_frame_equal(old, before, check_exact=True)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "tasks").glob("*.parquet") if p.name in stamps} == stamps
    six = canonical(pd.concat(run_config(RunConfig.from_flat(backend="gaussian", gens=4, seeds=6, n_real=30,
                                                              n_eval=40, omega=o)) for o in (0.0, 1.0)))
    got = canonical(after).drop(columns=["run", "ensemble"]).sort_values(options).reset_index(drop=True)
    want = six.drop(columns=["run", "ensemble"]).sort_values(options).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    again = cli("sweep", *args, "--seeds", "6", "--extend")
    assert again.returncode == 0 and "4 of them already done" in again.stderr


# --------------------------------------------------------------------------- 10: the Python API's types

@pytest.mark.parametrize("make", [lambda: RunConfig(loop=LoopConfig(gens="3")),
                                  lambda: RunConfig(loop=LoopConfig(gens=2.5)),
                                  lambda: RunConfig(seeds=True),
                                  lambda: RunConfig.from_flat(first_seed=1.0)],
                         ids=["gens-str", "gens-float", "seeds-bool", "first-seed-float"])
def test_the_python_api_checks_types_strictly(make):
    with pytest.raises(ConfigError, match="must be an integer"):
        make().validate()


# --------------------------------------------------------------------------- 11: nothing read back is trusted unchecked

CHUNKED = [*GAUSS, "--gens", "6", "--seeds", "4", "--seed-chunk", "2", "--quiet"]


def finished_sweep(out: Path, *extra) -> pd.DataFrame:
    assert cli("sweep", *CHUNKED, *extra, "--out", out).returncode == 0
    return canonical(pd.read_parquet(out / "results.parquet"))


def rerun_names(out: Path, path: Path, *says: str, extra=()) -> pd.DataFrame:
    """Rerun the sweep: exit 0, one line that names `path` and says `says`; the merged rows."""
    again = cli("sweep", *CHUNKED, *extra, "--out", out)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    lines = [l for l in again.stderr.splitlines() if str(path) in l]
    assert len(lines) == 1 and all(s in lines[0] for s in says), again.stderr
    merged = pd.read_parquet(out / "results.parquet")
    assert not merged.duplicated(KEY).any()
    return canonical(merged)


def test_a_foreign_task_file_with_the_right_row_count_is_named_and_computed_again(tmp_path):
    out = tmp_path / "s"
    reference = finished_sweep(out)
    first, second = sorted((out / "tasks").glob("*.parquet"))
    second.write_bytes(first.read_bytes())                   # the other task's file (other seeds)
    (out / "results.parquet").unlink()
    status = " ".join(cli("status", out).stdout.split())
    assert "1 done" in status, status                        # its footer says whose it is
    pd.testing.assert_frame_equal(rerun_names(out, second, "belongs elsewhere", "computing it again"),
                                  reference, check_exact=True)
    # a file without madlab's footer identity (as madlab wrote before it had one) is checked by its rows
    pd.read_parquet(first).to_parquet(second, index=False)
    (out / "results.parquet").unlink()
    pd.testing.assert_frame_equal(rerun_names(out, second, "holds seeds 0-1, not the task's seeds 2-3"),
                                  reference, check_exact=True)


def data_region(path: Path) -> range:
    blob = path.read_bytes()
    return range(4, len(blob) - 8 - int.from_bytes(blob[-8:-4], "little"))


def flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


def test_every_single_byte_flip_in_a_task_file_is_detected_and_the_rerun_equals_the_original(tmp_path):
    out = tmp_path / "s"
    reference = finished_sweep(out)
    path = sorted((out / "tasks").glob("*.parquet"))[0]
    task_id = path.name.removesuffix(".parquet")
    original = path.read_bytes()
    region = data_region(path)
    for offset in region:                                    # every byte of every page and header
        flip(path, offset)
        problem = store.check_task_file(out, task_id)
        assert problem is not None and str(path) in problem, offset
        path.write_bytes(original)
    flip(path, region[len(region) // 2])
    (out / "results.parquet").unlink()
    pd.testing.assert_frame_equal(rerun_names(out, path, "computing it again"), reference, check_exact=True)


def stopped_after(out: Path, generation: int) -> list[Path]:
    """Each task's checkpoint of a finished, kept sweep made to look as if it stopped after
    `generation`: later generations' files, the task files and results.parquet removed."""
    folders = sorted((out / "tasks").glob("*.ckpt"))
    for folder in folders:
        for later in folder.glob("g*"):
            if int(later.name[1:5]) > generation:
                later.unlink()
        (out / "tasks" / folder.name.replace(".ckpt", ".parquet")).unlink()
    (out / "results.parquet").unlink()
    return folders


def sliced(path: Path) -> None:
    import torch

    state = torch.load(path, weights_only=False)
    state.synthetic = [s[:, :3] for s in state.synthetic]    # the synthetic set cut to 3 points
    torch.save(state, path)


@pytest.mark.parametrize("damage", ["swapped", "sliced", "flipped", "other-dimension"])
def test_a_swapped_sliced_or_flipped_checkpoint_is_named_and_not_resumed(tmp_path, damage):
    out = tmp_path / "s"
    keep = ("--keep-checkpoints", "true")
    reference = finished_sweep(out, *keep)
    mine, theirs = stopped_after(out, 3)
    state = mine / "g0003.pt"
    if damage == "swapped":
        state.write_bytes((theirs / "g0003.pt").read_bytes())          # the other task's (seeds 2-3)
    elif damage == "sliced":
        sliced(state)
    elif damage == "flipped":
        flip(state, state.stat().st_size // 2)
    else:                                                              # points of another dimension
        import torch

        loaded = torch.load(state, weights_only=False)
        loaded.synthetic = [torch.cat([s, s[..., :1]], -1) for s in loaded.synthetic]
        torch.save(loaded, state)
    rerun = rerun_names(out, state, "SHA-256", "resuming after generation 2", extra=keep)
    pd.testing.assert_frame_equal(rerun, reference, check_exact=True)


def test_a_checkpoint_rows_file_of_another_task_is_named_and_not_resumed(tmp_path):
    out = tmp_path / "s"
    reference = finished_sweep(out, "--keep-checkpoints", "true")
    mine, theirs = stopped_after(out, 3)
    rows = mine / "g0002.parquet"
    rows.write_bytes((theirs / "g0002.parquet").read_bytes())
    rerun = rerun_names(out, rows, "belongs elsewhere", "resuming after generation 1",
                        extra=("--keep-checkpoints", "true"))
    pd.testing.assert_frame_equal(rerun, reference, check_exact=True)


# --------------------------------------------------------------------------- 12: run folders self-contained and typed

def test_a_copied_run_folder_writes_and_reads_its_own_samples(tmp_path):
    import json
    import shutil

    out = tmp_path / "r"
    assert cli("run", *GAUSS, "--save-samples", "--quiet", "--out", out).returncode == 0
    manifest = json.loads((out / "sweep.json").read_text())
    assert {t["config"]["samples_dir"] for t in manifest["tasks"]} == {"samples"}   # relative
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(out)                                        # moved: the copy still has its samples
    shown = cli("samples", copy, "--seed", "1", "--generation", "2")
    assert shown.returncode == 0, shown.stderr
    assert (copy / "report" / "samples-seed1-gen2.png").exists()
    again = copy.parent / "again"
    shutil.copytree(copy, again)
    (again / "results.parquet").unlink()
    for task in (again / "tasks").glob("*.parquet"):
        task.unlink()
    shutil.rmtree(again / "samples")
    assert cli("run", *GAUSS, "--save-samples", "--quiet", "--out", again).returncode == 0
    assert list((again / "samples").rglob("*.npz")) and not out.exists()   # into the copy, not the original


def test_a_run_folder_refuses_madlab_sweep_and_a_sweep_folder_madlab_run(tmp_path):
    run, sweep = tmp_path / "run", tmp_path / "sweep"
    assert cli("run", *GAUSS, "--quiet", "--out", run).returncode == 0
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", sweep).returncode == 0
    before = files(run)
    one_line(cli("sweep", *GAUSS, "--omega", "3,4", "--extend", "--quiet", "--out", run), 2,
             "is a madlab run folder", "resume it with madlab run")
    one_line(cli("sweep", *GAUSS, "--quiet", "--out", run), 2, "is a madlab run folder")   # not 'seed chunk'
    one_line(cli("run", *GAUSS, "--omega", "1", "--quiet", "--out", sweep), 2,
             "is a madlab sweep folder", "resume it with madlab sweep")
    assert files(run) == before
    assert cli("run", *GAUSS, "--quiet", "--out", run).returncode == 0      # the run itself still resumes


def test_a_rerun_with_another_tails_setting_is_refused_and_other_settings_are_applied(tmp_path):
    import json

    out = tmp_path / "r"
    assert cli("run", *GAUSS, "--quiet", "--out", out).returncode == 0
    one_line(cli("run", *GAUSS, "--no-tails", "--quiet", "--out", out), 2, "--tails", "--no-tails",
             "changes the rows recorded")
    sweep = tmp_path / "s"
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", sweep).returncode == 0
    one_line(cli("sweep", *GAUSS, "--omega", "0,1", "--tails", "false", "--quiet", "--out", sweep), 2,
             "changes the rows recorded")
    (sweep / "results.parquet").unlink()
    for task in (sweep / "tasks").glob("*.parquet"):
        task.unlink()
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--save-samples", "true", "--quiet", "--out", sweep).returncode == 0
    manifest = json.loads((sweep / "sweep.json").read_text())
    assert all(t["config"]["save_samples"] for t in manifest["tasks"])     # applied, and recorded
    assert list((sweep / "samples").rglob("*.npz"))


def test_corrupt_or_missing_config_json_and_a_dangling_out_say_what_they_are(tmp_path):
    out = tmp_path / "r"
    assert cli("run", *GAUSS, "--quiet", "--out", out).returncode == 0
    (out / "config.json").write_text("[1, 2]")
    line = one_line(cli("run", *GAUSS, "--quiet", "--out", out), 2, "unreadable config.json")
    assert "madlab 0.1" not in line
    (out / "config.json").unlink()
    line = one_line(cli("run", *GAUSS, "--quiet", "--out", out), 2, "config.json is missing")
    assert "sweep" not in line
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "nowhere")
    for command in ("run", "sweep"):
        one_line(cli(command, *GAUSS, "--quiet", "--out", dangling), 2, "symbolic link", "does not exist")


# --------------------------------------------------------------------------- 13: bounded work

@pytest.mark.parametrize("args, says", [
    (["--epochs", "1e308"], "--epochs"), (["--aux-epochs", "1e12"], "--aux-epochs"),
    (["--gens", "1000000000"], "--gens"), (["--seeds", "100000000"], "--seeds"),
    (["--threads", "100000"], "--threads"),
    (["--n-real", "100000", "--seeds", "100000", "--seed-chunk", "100000"], "one seed chunk"),
])
def test_absurd_sizes_are_refused_in_validation(tmp_path, args, says):
    for command in ("run", "sweep"):
        one_line(cli(command, "--backend", "gaussian", *args, "--out", tmp_path / "never"), 2, says)
    assert not (tmp_path / "never").exists()


def test_a_sweep_of_many_one_task_configurations_plans_in_one_pass(tmp_path):
    from madlab.commands import sweep as command

    spec = SweepSpec(base={"backend": "gaussian", "seeds": 1, "gens": 2}, grid={"omega": [float(i) for i in range(400)]})
    tasks = spec.tasks()
    looked = []
    from madlab.plan import make_plan

    plan = make_plan(tmp_path / "never", tasks, probe=False)

    class Counting(list):
        def __iter__(self):
            looked.append(1)
            return super().__iter__()

    plan.tasks = Counting(plan.tasks)
    with redirect_stdout(io.StringIO()):
        command.print_plan(plan, 1, False)
    assert len(looked) < 20                                   # a few passes, not one per configuration (400)


def test_a_server_that_is_not_a_dask_scheduler_fails_within_the_timeout(tmp_path):
    pytest.importorskip("distributed")
    import json
    import socket
    import threading

    from madlab.executors import DaskExecutor

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(4)), daemon=True).start()
    with pytest.raises(ConfigError, match="no dask scheduler answered"):
        DaskExecutor(scheduler=f"tcp://127.0.0.1:{server.getsockname()[1]}", timeout_s=1).connect()
    server.close()
    for text in ("{not json", json.dumps({"address": 3}), json.dumps(["x"])):
        (tmp_path / "scheduler.json").write_text(text)
        with pytest.raises(ConfigError, match="is not a dask scheduler file"):
            DaskExecutor(scheduler=str(tmp_path / "scheduler.json")).connect()


# --------------------------------------------------------------------------- 14: one line for every bad input

@pytest.mark.parametrize("toml", ["base = 3\n", 'grid = "x"\n', "sweep = [1, 2]\n"])
def test_a_sweep_file_whose_tables_are_not_tables_is_one_line(tmp_path, toml):
    (tmp_path / "bad.toml").write_text(toml)
    one_line(cli("sweep", tmp_path / "bad.toml", "--out", tmp_path / "never"), 2, "must be a table")


def test_a_sweep_file_with_a_utf8_bom_is_read(tmp_path):
    (tmp_path / "bom.toml").write_bytes(b'\xef\xbb\xbf[base]\nbackend = "gaussian"\ngens = 2\nseeds = 2\n')
    result = cli("sweep", tmp_path / "bom.toml", "--dry-run", "--out", tmp_path / "never")
    assert result.returncode == 0 and "Invalid statement" not in result.stderr, result.stderr


def test_report_on_another_schema_or_non_finite_sizes_is_one_line(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(other / "results.parquet")
    one_line(cli("report", other), 2, "is not a madlab results table")
    run = tmp_path / "run"
    assert cli("run", *GAUSS, "--gens", "5", "--quiet", "--out", run).returncode == 0
    for sizes in ("nan", "inf", "-3"):
        one_line(cli("report", run, "--sizes", sizes), 2, "sizes must be positive finite numbers")


def test_samples_on_a_torn_random_or_foreign_npz_is_one_line_and_out_is_what_is_written(tmp_path):
    out = tmp_path / "r"
    assert cli("run", *GAUSS, "--save-samples", "--quiet", "--out", out).returncode == 0
    mine = next((out / "samples").glob("*/seeds-1-1/gen-0002.npz"))
    theirs = next((out / "samples").glob("*/seeds-0-0/gen-0002.npz"))
    original = mine.read_bytes()
    for damaged in (original[:100], os.urandom(3000), theirs.read_bytes()):
        mine.write_bytes(damaged)
        one_line(cli("samples", out, "--seed", "1", "--generation", "2"), 2, str(mine), "--regenerate")
    mine.write_bytes(original)
    folder = tmp_path / "pictures"
    folder.mkdir()
    shown = cli("samples", out, "--seed", "1", "--generation", "2", "--out", folder)
    assert shown.returncode == 0 and (folder / "samples-seed1-gen2.png").exists()
    named = cli("samples", out, "--seed", "1", "--generation", "2", "--out", tmp_path / "plain")
    assert f"wrote {tmp_path / 'plain.png'}" in named.stdout and (tmp_path / "plain.png").exists()


def test_non_utf8_paths_are_refused_before_any_work(tmp_path):
    bad = os.fsdecode(bytes(tmp_path) + b"/caf\xe9")
    for args in (["run", *GAUSS, "--quiet", "--out", bad], ["status", bad]):
        one_line(cli(*args), 2, "is not UTF-8")
    assert os.listdir(tmp_path) == []


def test_a_kill_during_the_final_merge_leaves_no_temporary_file_for_good(tmp_path):
    out = tmp_path / "s"
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", out).returncode == 0
    litter = out / ".results.parquet.abc123.tmp"                # what a kill mid-merge leaves
    litter.write_bytes(b"half a table")
    assert cli("sweep", *GAUSS, "--omega", "0,1", "--quiet", "--out", out).returncode == 0
    assert not litter.exists()


def test_a_full_disk_names_the_file_and_leaves_no_empty_figure(tmp_path):
    run = tmp_path / "run"
    assert cli("run", *GAUSS, "--gens", "5", "--quiet", "--out", run).returncode == 0
    with tmpfs(tmp_path / "disk", "size=64k") as disk:
        (disk / "filler").write_bytes(b"\0" * (64 * 2 ** 10 - 4096))
        try:
            (disk / "more").write_bytes(b"\0" * 8192)
        except OSError:
            pass
        for command in ("run", "sweep"):
            one_line(cli(command, *GAUSS, "--quiet", "--out", disk / command), 1, str(disk / command),
                     "No space left on device")
        one_line(cli("report", run, "--out", disk / "report"), 1, str(disk / "report"), "No space left")
        assert [p for p in (disk / "report").iterdir() if p.stat().st_size == 0] == []


def test_files_written_before_identities_were_recorded_are_still_trusted_by_their_rows(tmp_path):
    """Task files and checkpoints of an older madlab (no footer identity) are checked by their rows
    and kept: a sweep interrupted under older code resumes without recomputing what it had."""
    out = tmp_path / "s"
    reference = finished_sweep(out, "--keep-checkpoints", "true")
    mine, theirs = stopped_after(out, 3)
    for rows in mine.glob("g*.parquet"):                       # as madlab wrote them before
        pd.read_parquet(rows).to_parquet(rows, index=False)
    assert store.read_identity(mine / "g0003.parquet") is None
    again = cli("sweep", *CHUNKED, "--keep-checkpoints", "true", "--out", out)
    assert again.returncode == 0 and "madlab: task" not in again.stderr, again.stderr
    pd.testing.assert_frame_equal(canonical(pd.read_parquet(out / "results.parquet")), reference, check_exact=True)
    task = sorted((out / "tasks").glob("*.parquet"))[0]
    pd.read_parquet(task).to_parquet(task, index=False)
    stamp = task.stat().st_mtime_ns
    (out / "results.parquet").unlink()
    again = cli("sweep", *CHUNKED, "--keep-checkpoints", "true", "--out", out)
    assert again.returncode == 0 and "madlab: task" not in again.stderr, again.stderr
    assert task.stat().st_mtime_ns == stamp                    # kept, not recomputed
    pd.testing.assert_frame_equal(canonical(pd.read_parquet(out / "results.parquet")), reference, check_exact=True)
