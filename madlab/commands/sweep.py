"""`madlab sweep`: a grid of runs (command line or TOML file) as resumable tasks on an executor."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from madlab import presets
from madlab.commands.options import argument, command, config_options, option
from madlab.config import ConfigError
from madlab.executors import EXECUTORS
from madlab.sweep import MAX_TASKS

SWEEP = "Sweep"
LOCAL = "Local executor"
SLURM = "Slurm executor (submitit)"
DASK = "Dask executor"

stderr = Console(stderr=True, soft_wrap=True)   # one-line messages stay one line


def build_spec(file: Optional[Path], preset: Optional[str], grid: dict[str, str]):
    from madlab.sweep import SweepSpec, parse_values

    if file is not None and preset is not None:
        raise ConfigError("give a sweep FILE or --preset NAME, not both")
    spec = (SweepSpec.from_toml(file) if file is not None else
            presets.load(preset) if preset is not None else SweepSpec())
    return spec.override({name: parse_values(name, text) for name, text in grid.items() if text is not None})


def default_out(spec: SweepSpec, from_file: bool, tasks) -> Path:
    if from_file:
        return Path("sweeps") / spec.name
    digest = hashlib.sha256(json.dumps(sorted(t.id for t in tasks)).encode()).hexdigest()[:8]
    return Path("sweeps") / f"{spec.name}-{digest}"


def progress_ui():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=stderr, transient=False)


def run_with_progress(out: Path, tasks, executor, name: str, show: bool, lock=None,
                      session: dict | None = None) -> dict:
    """`run_sweep` with a bar over tasks (and, in-process, one over seed-generations). A stop
    signal ends it with one line and exit status 128 + N; the finished generations stay on disk.
    `session` (madlab.sweep.begin_session) is closed with the outcome."""
    from madlab.interrupt import as_interrupted, hold
    from madlab.sweep import end_session, generations_done

    outcome = "error"
    try:
        counts = _run_with_progress(out, tasks, executor, name, show, lock)
        outcome = "failed" if counts["failed"] else "done"
        return counts
    except BaseException as err:
        stop = as_interrupted(err)
        if stop is None:
            raise
        hold()
        outcome = "interrupted"
        stderr.print(f"madlab: interrupted after {generations_done(out, tasks)} generations of "
                     f"{len(tasks)} tasks; rerun the same command to resume", markup=False)
        raise SystemExit(stop.code) from None
    finally:
        if session is not None:
            try:
                end_session(out, session, outcome)
            except OSError:
                pass          # a full disk: the error that matters is already on its way


def _run_with_progress(out: Path, tasks, executor, name: str, show: bool, lock) -> dict:
    from madlab.store import checkpointed_generations
    from madlab.sweep import run_sweep

    if not show:
        return run_sweep(out, tasks, executor, lock=lock)
    with progress_ui() as bar, SeedGenerations(out, bar) as poll:
        state = {"done": 0, "failed": 0}
        ids = {}

        def start(todo) -> None:
            ids["tasks"] = bar.add_task(name, total=len(todo), unit="tasks")
            total = sum(t.config["seeds"] * (t.config["gens"] - checkpointed_generations(out, t.id))
                        for t in todo)
            ids["steps"] = bar.add_task("  seed-generations", total=total, unit="")
            if not executor.in_process:      # workers elsewhere: count their checkpoints on disk
                poll.start(todo, ids["steps"])

        def done(outcome: dict) -> None:
            state[outcome["state"]] = state.get(outcome["state"], 0) + 1
            failed = f" ({state['failed']} failed)" if state["failed"] else ""
            bar.update(ids["tasks"], advance=1, description=f"{name}{failed}")

        def step(n: int) -> None:
            bar.update(ids["steps"], advance=n)

        return run_sweep(out, tasks, executor, on_start=start, on_done=done, on_step=step, lock=lock)


class SeedGenerations:
    """Counts the seed-generations that worker processes (or cluster jobs on a shared disk) have
    finished, from their per-generation checkpoints and task files, every `every_s` seconds, onto
    a progress bar: one bar over all workers."""

    def __init__(self, out: Path, bar, every_s: float = 0.5):
        import threading

        self.out, self.bar, self.every_s = Path(out), bar, every_s
        self.stop = threading.Event()
        self.thread = None

    def finished(self, todo) -> int:
        from madlab.store import checkpointed_generations, task_paths

        return sum(t.config["seeds"] * (t.config["gens"] if task_paths(self.out, t.id)["done"].exists()
                                        else checkpointed_generations(self.out, t.id)) for t in todo)

    def start(self, todo, bar_id) -> None:
        import threading

        base = self.finished(todo)
        every = max(self.every_s, len(todo) / 2000)      # a listing per task: slower for huge sweeps

        def poll() -> None:
            while not self.stop.wait(every):
                try:
                    self.bar.update(bar_id, completed=self.finished(todo) - base)
                except OSError:
                    pass
            self.bar.update(bar_id, completed=self.finished(todo) - base)

        self.thread = threading.Thread(target=poll, name="madlab-progress", daemon=True)
        self.thread.start()

    def __enter__(self) -> "SeedGenerations":
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)


def report_outcome(out: Path, counts: dict, total: int) -> None:
    """One summary line; failures point at `madlab status`. Exit 1 if any task failed."""
    stderr.print(f"{out}: {counts['done']}/{total} tasks done"
                 + (f", {counts['failed']} failed" if counts["failed"] else "")
                 + (f", {counts['pending']} pending" if counts["pending"] else "")
                 + (f" ({counts['skipped']} of them already done before this run)" if counts["skipped"] else ""), markup=False)
    if counts["rows"]:
        print(f"results: pandas.read_parquet('{out / 'results.parquet'}')  ({counts['rows']} rows)")
    if counts["failed"] or counts["pending"]:
        from madlab.store import read_failure, task_state
        from madlab.sweep import load_tasks

        _, tasks = load_tasks(out)
        failures = [(t, f) for t in tasks if (f := read_failure(out, t.id)) and task_state(out, t.id) == "failed"]
        for task, failure in failures[:3]:
            stderr.print(f"  failed: {task.label()}: {failure.get('error')}", markup=False, soft_wrap=True)
        stderr.print(f"see `madlab status {out}` for the errors; rerun the same command to retry")
        raise SystemExit(1)


def fixed_options(tasks) -> dict:
    """The options every task shares that are not at madlab run's default (the learner, the loop,
    the sizes...), by flat name: what the plan's per-configuration rows do not show."""
    from madlab.config import option_spec

    if not tasks:
        return {}
    out = {}
    for key, value in tasks[0].config.items():
        if key in tasks[0].point or key in ("seeds", "first_seed"):
            continue
        try:
            spec = option_spec(key)
        except ValueError:
            continue
        if spec.identity and value != spec.default and all(t.config.get(key) == value for t in tasks):
            out[key] = ",".join(value) if isinstance(value, list) else value
    return out


def print_plan(plan, jobs: Optional[int], bare: bool) -> None:
    """--dry-run: one row per configuration (its seed chunks are its tasks), then the totals."""
    from rich.markup import escape
    from rich.table import Table

    from madlab.plan import duration

    table = Table(title="madlab sweep --dry-run: the plan (nothing written)")
    for col in ("configuration", "run", "tasks", "seeds", "generations", "seed-generations\nto run", "done", "estimate"):
        table.add_column(col, justify="left" if col in ("configuration", "run") else "right")
    by_run: dict[str, list] = {}             # one pass over the tasks: the plan is linear in them
    for t in plan.tasks:
        by_run.setdefault(t.run, []).append(t)
    for run, mine in by_run.items():
        first = mine[0]
        where = " ".join(f"{k}={v}" for k, v in first.point.items()) or "(one configuration)"
        seconds = [plan.seconds(t) for t in mine if plan.states.get(t.id) != "done"]
        estimate = "–" if not seconds else "?" if None in seconds else duration(sum(seconds))
        table.add_row(escape(where), run, str(len(mine)), str(sum(t.config["seeds"] for t in mine)),
                      str(first.config["gens"]), f"{plan.seed_generations(mine):,}",
                      str(sum(plan.states.get(t.id) == "done" for t in mine)), estimate)
    Console(width=max(Console().width, 110)).print(table)
    fixed = fixed_options(plan.tasks)
    if fixed:
        print("every configuration, beyond madlab run's defaults: " + " ".join(f"{k}={v}" for k, v in fixed.items()))
    if bare:
        print("no grid given: madlab run's default configuration as a sweep")
    print(plan.line(jobs))
    print("the estimate scales a measured cost per seed-generation by each configuration's sizes "
          "(madlab/plan.py); seeds trained together in large chunks usually run faster per seed")


OWN_OPTIONS = [
    argument("file", required=False, type=click.Path(path_type=Path), help="A TOML sweep file ([sweep] name, seed_chunk; [base] fixed options; [grid] option = [values])."),
    option("--preset", panel=SWEEP, help=f"Run a packaged sweep file instead: {', '.join(presets.available())}."),
    option("--out", type=click.Path(path_type=Path), panel=SWEEP, help="Sweep directory [default: sweeps/<name> for a file or preset, sweeps/sweep-<hash> otherwise]. Rerunning the same sweep there skips finished tasks and retries failed ones."),
    option("--extend", is_flag=True, panel=SWEEP, help="Add this sweep's new tasks to an existing sweep directory (otherwise a different grid there is refused)."),
    option("--max-tasks", type=int, default=MAX_TASKS, show_default=True, panel=SWEEP, help="Refuse a sweep of more tasks than this (counted from the grid before any task is built)."),
    option("--dry-run", is_flag=True, panel=SWEEP, help="Print the plan — every configuration's seed chunks (tasks), the seed-generations and an estimated cost — and stop; nothing is written."),
    option("--executor", type=click.Choice(tuple(EXECUTORS)), default="local", show_default=True, panel=SWEEP, help="Where tasks run: local processes, Slurm job arrays (madlab[slurm]), or a Dask cluster (madlab[dask])."),
    option("--threads", type=int, default=1, show_default=True, panel=SWEEP, help="Torch threads per task (0: torch's default)."),
    option("--progress/--quiet", default=True, show_default=True, panel=SWEEP, help="Show progress over tasks on stderr."),
    option("--jobs", type=int, default=1, show_default=True, panel=LOCAL, help="Tasks run at once in separate processes (1: in this process)."),
    option("--partition", panel=SLURM, help="Slurm partition [default: the cluster's]."),
    option("--time-min", type=int, default=60, show_default=True, panel=SLURM, help="Wall-time limit per task, minutes."),
    option("--gpus-per-task", type=int, default=0, show_default=True, panel=SLURM, help="GPUs per task (add --device cuda)."),
    option("--cpus-per-task", type=int, panel=SLURM, help="CPU cores per task [default: --threads]."),
    option("--mem-gb", type=float, panel=SLURM, help="Memory per task, GB [default: the partition's]."),
    option("--array-parallelism", type=int, default=256, show_default=True, panel=SLURM, help="Most array tasks running at once."),
    option("--slurm-cluster", hidden=True, help="submitit cluster (local: run the jobs as local processes, for tests)."),
    option("--scheduler", panel=DASK, help="Dask scheduler address (tcp://host:8786) or scheduler JSON file."),
    option("--wandb", metavar="PROJECT", panel=SWEEP, help="Also log the finished sweep to this Weights & Biases project (madlab[wandb]): one W&B run per configuration, grouped by the sweep's name, with its resolved configuration, provenance and per-generation mean, median, 5-95 % band and outlier share. Runs after the sweep; a W&B failure is a warning. WANDB_MODE=offline logs to ./wandb."),
]


def register(app: click.Group) -> None:
    def sweep(file: Optional[Path], preset: Optional[str], out: Optional[Path], extend: bool,
              max_tasks: int, dry_run: bool, executor: str, threads: int, progress: bool, jobs: int,
              partition: Optional[str], time_min: int, gpus_per_task: int, cpus_per_task: Optional[int],
              mem_gb: Optional[float], array_parallelism: int, slurm_cluster: Optional[str],
              scheduler: Optional[str], wandb: Optional[str], **grid: Optional[str]) -> None:
        """Run a grid of configurations x seeds as resumable tasks; merge them into one table.

        Every `madlab run` option takes a comma-separated list here; the sweep is the Cartesian
        product (options given on the command line override the FILE's).

        \b
        Examples:
        madlab sweep --omega 0,1,3 --n-synth 125,250 --seeds 64 --seed-chunk 16 --jobs 2 --out sweeps/a
        madlab sweep --preset example --out sweeps/example
        madlab sweep my.toml --out sweeps/b --executor slurm --partition gpu --gpus-per-task 1 --device cuda
        madlab sweep my.toml --out sweeps/c --executor dask --scheduler tcp://10.0.0.1:8786
        """
        from madlab.executors import make_executor
        from madlab.plan import make_plan
        from madlab.runner import check_environment
        from madlab.store import SweepLock
        from madlab.sweep import begin_session, open_sweep

        spec = build_spec(file, preset, grid)
        check_environment()
        if wandb is not None:
            from madlab import tracking
            tracking.require()                      # without the extra: one line, exit 2, nothing run
        if max_tasks < 1:
            raise ConfigError(f"--max-tasks must be positive, got {max_tasks}")
        tasks = spec.tasks(limit=max_tasks)
        runner = make_executor(executor, jobs=jobs, threads=threads, scheduler=scheduler,
                               partition=partition, time_min=time_min, gpus_per_task=gpus_per_task,
                               cpus_per_task=cpus_per_task, mem_gb=mem_gb,
                               array_parallelism=array_parallelism, cluster=slurm_cluster)
        out_dir = out or default_out(spec, file is not None or preset is not None, tasks)
        bare = file is None and preset is None and not any(v is not None for v in grid.values())
        local = executor == "local"
        if dry_run:
            print_plan(make_plan(out_dir, tasks, threads=threads, probe=local), jobs if local else None, bare)
            return
        if hasattr(runner, "connect"):              # a scheduler that cannot be reached: nothing written
            runner.connect()
        from madlab.samples import configure_tasks
        configure_tasks(tasks, out_dir)             # --save-samples: into OUT/samples/<run id>
        open_sweep(out_dir, spec, tasks, extend=extend, write=False)    # refusals write nothing
        with SweepLock(out_dir) as lock:            # a sweep running there: refused, nothing written
            all_tasks = open_sweep(out_dir, spec, tasks, extend=extend)
            session = begin_session(out_dir, all_tasks)
            plan = make_plan(out_dir, all_tasks, threads=threads, probe=local)
            stderr.print(("no grid given: madlab run's default configuration as a sweep; " if bare else "")
                         + plan.line(jobs if local else None), markup=False)
            counts = run_with_progress(out_dir, all_tasks, runner, f"{spec.name} ({runner.name})",
                                       progress, lock=lock, session=session)
        report_outcome(out_dir, counts, len(all_tasks))
        if wandb is not None and counts.get("done") and (out_dir / "results.parquet").exists():
            from madlab import tracking
            n = tracking.log_directory(wandb, out_dir)
            if n:
                stderr.print(f"W&B: {n} run{'s' * (n != 1)} logged to project {wandb}", markup=False)

    app.add_command(command("sweep", sweep, [*OWN_OPTIONS, *config_options("sweep")]))
