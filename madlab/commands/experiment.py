"""`madlab experiment NAME`: one of the paper's other experiments as a toy analogue -> figure + table."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from madlab.commands.options import argument, command, option
from madlab.config import ConfigError
from madlab.experiments import EXPERIMENTS, SCALES

stderr = Console(stderr=True)

OWN_OPTIONS = [
    argument("name", type=click.Choice(tuple(EXPERIMENTS)), help="landscape (paper Fig. 3) | pollution (Fig. 6) | shift (Fig. 7) | mad-loops (the three MAD loops with the Gaussian fit) | sims-theory (SIMS on the Gaussian fit against its exact expectations) | accumulate (accumulate and accumulate-subsample against theory) | images-self-improve (Fig. 4 on real images) | images-pollution (Fig. 6) | images-shift (Fig. 7) | images-loop (the augment loop on images, standard vs SIMS, fully synthetic as MAD reference) | images-fid (the FID floor and its bias). The images-* ones resume from OUT/work."),
    option("--scale", type=click.Choice(SCALES), default="quick", show_default=True, help="smoke (a minute: checks the plumbing) | quick (under 20 min on 2 CPU cores; reduced sizes, see docs/experiments.md; images-*: about an hour) | paper (the paper's sizes; hours on a CPU, use a GPU for the DDPM experiments; images-*: CIFAR-10 scale, --set edm.dataset=PATH.npz --device cuda)."),
    option("--out", type=click.Path(path_type=Path), help="Output folder for figure.png/.pdf, table.csv/.md, measurements.csv, settings.json [default: runs/experiments/NAME-SCALE]."),
    option("--device", help="cpu | cuda | cuda:N (the toy DDPM experiments; mad-loops is closed form) [default: the scale's, cpu]."),
    option("--seeds", type=int, help="Override the scale's number of seeds."),
    option("--set", "set_", multiple=True, help="Override any setting, KEY=VALUE (lists comma-separated), e.g. --set n_aux=20000 --set omegas=0,1,2; a component's option as GROUP.FIELD, e.g. --set edm.net=medium. Repeatable; the settings are listed in settings.json."),
    option("--jobs", type=int, help="Processes that measure chunks of the seeds side by side (this one and jobs - 1 workers), so an experiment uses every usable core (the CPU affinity), at most one process per seed; the table and summary are those of one process. 1: this process only. mad-loops (closed form) and --device cuda: always one process [default: the usable cores]."),
    option("--threads", type=int, help="Torch threads per process [default: 1; the usable cores with --device cuda]."),
    option("--progress/--quiet", default=True, show_default=True, help="Show progress on stderr."),
    option("--dry-run", is_flag=True, help="images-*: print the workload (images trained and sampled) and its CPU estimate from measured rates, and run nothing."),
]


def register(app: click.Group) -> None:
    def experiment(name: str, scale: str, out: Optional[Path], device: Optional[str], seeds: Optional[int],
                   set_: tuple[str, ...], jobs: Optional[int], threads: Optional[int], progress: bool,
                   dry_run: bool) -> None:
        """Run one toy analogue of the SIMS paper's experiments and write its figure and table.

        Example: madlab experiment mad-loops --scale quick --out runs/mad-loops
        """
        from madlab.cores import describe, layout
        from madlab.experiments import load
        from madlab.experiments.common import override, to_markdown, write_outputs
        from madlab.runner import check_environment

        if device is not None:
            from madlab.experiments.common import check_device
            check_device(device)          # every experiment, also those that run on the CPU only
        module = load(name)
        assignments = list(set_ or [])
        if seeds is not None:
            assignments.append(f"seeds={seeds}")
        if device is not None:
            assignments.append(f"device={device}")
        folder = out or Path("runs") / "experiments" / f"{name}-{scale}"
        if hasattr(module.SCALES[scale], "workdir"):  # image experiments: resumable in OUT/work
            assignments.insert(0, f"workdir={folder / 'work'}")
        settings = override(module.SCALES[scale], assignments)
        try:
            settings.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if dry_run:
            if not hasattr(module, "workload"):
                raise ConfigError(f"--dry-run: {name} has no cost model (the images-* experiments have)")
            for key, value in module.workload(settings).items():
                print(f"{key}: {'no measured rate for this network and device' if value is None else value}")
            return
        check_environment()
        processes, threads, _ = layout(settings.seeds, jobs, getattr(settings, "device", "cpu"), threads)
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
        if hasattr(settings, "learner"):  # the toy DDPM as the experiment built it
            from madlab.experiments.common import ddpm_backend
            extra["ddpm"] = ddpm_backend(settings.device, learner=settings.learner,
                                         batch_size=settings.batch_size,
                                         lr=settings.lr).config.to_dict()
        paths = write_outputs(folder, name, scale, settings, extra, result)
        print(to_markdown(result.summary), end="")
        for key, value in result.headline.items():
            print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
        for note in result.notes:
            print(f"note: {note}")
        for key, frame in result.tables.items():
            print(f"\n{key}:\n{to_markdown(frame)}", end="")
        print(f"wrote {', '.join(str(p) for p in paths)} ({seconds:.0f} s)")

    app.add_command(command("experiment", experiment, OWN_OPTIONS))


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
