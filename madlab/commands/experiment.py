"""`madlab experiment NAME`: one of the paper's other experiments (a toy analogue, or on real
images) -> figure + table.

One sub-command per experiment, built from its settings (madlab.experiments.*_settings) when it is
asked for: the experiment's own options and the run options it uses, each a flag (`--n-aux 500`)
grouped in --help like `madlab run`'s, and settable as `--set KEY=VALUE` as well."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from loops.options import get_path
from madlab.commands.options import SUBCOMMAND, GroupedCommand, option, setting_option
from madlab.config import ConfigError
from madlab.experiments import EXPERIMENTS, SCALES, Experiment

stderr = Console(stderr=True)

OWN_OPTIONS = [
    option("--scale", type=click.Choice(SCALES), default="quick", show_default=True, help="smoke (a minute: checks the plumbing) | quick (under 20 min on 2 CPU cores; reduced sizes, see docs/experiments.md; images-*: about an hour) | paper (the paper's sizes; hours on a CPU, use a GPU for the DDPM experiments; images-*: CIFAR-10 scale, --dataset PATH.npz --device cuda)."),
    option("--out", type=click.Path(path_type=Path), help="Output folder for figure.png/.pdf, table.csv/.md, measurements.csv, settings.json [default: runs/experiments/NAME-SCALE]."),
    option("--set", "set_", multiple=True, metavar="KEY=VALUE", help="Set a setting by its flat name or dotted path (lists comma-separated), e.g. --set n_aux=20000 --set omegas=0,1,2 --set edm.net=medium; also a component's internal knob, e.g. --set edm.sample_batch=500. Repeatable; applied after --scale, before the setting flags below; settings.json lists every setting."),
    option("--jobs", type=int, help="Processes that measure chunks of the seeds side by side (this one and jobs - 1 workers), so an experiment uses every usable core (the CPU affinity), at most one process per seed; the table and summary are those of one process. 1: this process only. mad-loops (closed form) and --device cuda: always one process [default: the usable cores]."),
    option("--threads", type=int, help="Torch threads per process [default: 1; the usable cores with --device cuda]."),
    option("--progress/--quiet", default=True, show_default=True, help="Show progress on stderr."),
    option("--dry-run", is_flag=True, help="images-*: print the workload (images trained and sampled) and its CPU estimate from measured rates, and run nothing."),
]


class ExperimentGroup(click.Group):
    """`madlab experiment NAME`: a sub-command per experiment, built when it is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(EXPERIMENTS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        return experiment_command(EXPERIMENTS[name]) if name in EXPERIMENTS else None


def experiment_command(cls: type[Experiment]) -> GroupedCommand:
    """`madlab experiment NAME` for the experiment whose settings are `cls`: its options, then a
    flag per setting (default: the quick scale's value; the other scales' where they differ)."""
    at = {scale: cls.at(scale) for scale in SCALES}
    flags = [setting_option(spec, {scale: get_path(at[scale], spec.path) for scale in SCALES})
             for spec in cls.settings()]

    def callback(scale: str, out: Optional[Path], set_: tuple[str, ...], jobs: Optional[int],
                 threads: Optional[int], progress: bool, dry_run: bool, **given) -> None:
        chosen = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in given.items() if v is not None]
        run(cls, scale, out, [*set_, *chosen], jobs, threads, progress, dry_run)

    resumes = " Resumes from OUT/work after an interruption." if hasattr(cls, "workdir") else ""
    doc = (f"{cls.__doc__}\n\nWrites figure.png/.pdf, table.csv/.md, measurements.csv and settings.json "
           f"into --out.{resumes}\n\nExample: madlab experiment {cls.NAME} --scale smoke")
    return GroupedCommand(cls.NAME, callback=callback, params=[*OWN_OPTIONS, *flags], help=doc,
                          short_help=cls.__doc__.split("\n")[0])


def register(app: click.Group) -> None:
    @click.pass_context
    def experiments(ctx: click.Context) -> None:
        """Run one of the SIMS paper's other experiments (a toy analogue, or on real images) and
        write its figure and table; `madlab experiment NAME --help` lists its settings.

        Example: madlab experiment mad-loops --scale quick --out runs/mad-loops
        """
        if ctx.invoked_subcommand is None:      # bare `madlab experiment`: the list
            click.echo(ctx.get_help())

    app.add_command(ExperimentGroup("experiment", callback=experiments, invoke_without_command=True,
                                    subcommand_metavar=SUBCOMMAND,
                                    help=experiments.__doc__))


def run(cls: type[Experiment], scale: str, out: Optional[Path], assignments: list[str], jobs: Optional[int],
        threads: Optional[int], progress: bool, dry_run: bool) -> None:
    """The experiment at `scale` with the assignments applied: figure, tables and settings.json in `out`."""
    from madlab.cores import describe, layout
    from madlab.experiments import load
    from madlab.experiments.common import to_markdown, write_outputs
    from madlab.runner import check_environment

    name = cls.NAME
    folder = out or Path("runs") / "experiments" / f"{name}-{scale}"
    if hasattr(cls, "workdir"):            # image experiments: resumable in OUT/work
        assignments.insert(0, f"workdir={folder / 'work'}")
    try:
        settings = cls.at(scale, assignments).validate()
    except ValueError as err:
        raise ConfigError(str(err)) from None
    module = load(name)
    if dry_run:
        if not hasattr(module, "workload"):
            raise ConfigError(f"--dry-run: {name} has no cost model (the images-* experiments have)")
        for key, value in module.workload(settings).items():
            print(f"{key}: {'no measured rate for this network and device' if value is None else value}")
        return
    check_environment()
    processes, threads, _ = layout(settings.seeds, jobs, settings.device, threads)
    if not hasattr(module, "measure"):      # mad-loops: closed form, one process
        processes = 1
    if progress:
        stderr.print(f"{name}: {settings.seeds} seeds, {describe(processes, threads)}",
                     markup=False, highlight=False)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder} exists and is not a folder")
    start = time.perf_counter()
    try:
        result = _run(name, settings, processes, threads, progress, start)
    except ConfigError:
        raise
    except ValueError as err:  # e.g. a curated set that the base model cannot fill
        raise ConfigError(f"{name}: {err}") from None
    seconds = time.perf_counter() - start
    extra = {"seconds": round(seconds, 1), "processes": processes, "torch_threads": threads}
    if "learner" in cls.USES:  # the toy DDPM as the experiment built it
        from madlab.experiments.common import ddpm_backend
        ddpm = settings.toy_ddpm
        extra["ddpm"] = ddpm_backend(settings.device, learner=ddpm.learner, batch_size=ddpm.batch_size,
                                     lr=ddpm.lr).config.to_dict()
    paths = write_outputs(folder, name, scale, settings, extra, result)
    print(to_markdown(result.summary), end="")
    for key, value in result.headline.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    for note in result.notes:
        print(f"note: {note}")
    for key, frame in result.tables.items():
        print(f"\n{key}:\n{to_markdown(frame)}", end="")
    print(f"wrote {', '.join(str(p) for p in paths)} ({seconds:.0f} s)")


def _run(name: str, settings, processes: int, threads: int, progress: bool, start: float):
    """The experiment's seeds in `processes` chunks side by side (madlab.experiments.chunks), with
    progress on stderr: a bar on a terminal, plain lines in a log."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from madlab.experiments.chunks import run_in_chunks

    if not progress:
        return run_in_chunks(name, settings, processes, threads)
    if not stderr.is_terminal:  # a log file: one plain line per step
        def report(done: int, total: int, message: str) -> None:
            stderr.print(f"[{done}/{total}] {name}: {message} ({time.perf_counter() - start:.0f} s)",
                         soft_wrap=True, markup=False, highlight=False)

        return run_in_chunks(name, settings, processes, threads, report)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=stderr, transient=False) as bar:
        task = bar.add_task(name, total=None)

        def report(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, description=f"{name}: {message}")

        return run_in_chunks(name, settings, processes, threads, report)
