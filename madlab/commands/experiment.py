"""`madlab experiment NAME`: one of the paper's other experiments as a toy analogue -> figure + table."""
from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from typing_extensions import Annotated

from madlab.config import ConfigError
from madlab.experiments import EXPERIMENTS, SCALES

Name = Enum("Name", {k: k for k in EXPERIMENTS}, type=str)
Scale = Enum("Scale", {k: k for k in SCALES}, type=str)
stderr = Console(stderr=True)


def register(app: typer.Typer) -> None:
    @app.command("experiment")
    def experiment(
        name: Annotated[Name, typer.Argument(help="landscape (paper Fig. 3) | pollution (Fig. 6) | shift (Fig. 7) | mad-loops (the three MAD loops with the Gaussian fit) | sims-theory (SIMS on the Gaussian fit against its exact expectations) | accumulate (accumulate and accumulate-subsample against theory).")],
        scale: Annotated[Scale, typer.Option(help="smoke (a minute: checks the plumbing) | quick (under 20 min on 2 CPU cores; reduced sizes, see docs/experiments.md) | paper (the paper's sizes; hours on a CPU, use a GPU for the DDPM experiments).")] = "quick",
        out: Annotated[Optional[Path], typer.Option(help="Output folder for figure.png/.pdf, table.csv/.md, measurements.csv, settings.json [default: runs/experiments/NAME-SCALE].")] = None,
        device: Annotated[Optional[str], typer.Option(help="cpu | cuda | cuda:N (the toy DDPM experiments; mad-loops is closed form) [default: the scale's, cpu].")] = None,
        seeds: Annotated[Optional[int], typer.Option(help="Override the scale's number of seeds.")] = None,
        set_: Annotated[Optional[List[str]], typer.Option("--set", help="Override any setting, KEY=VALUE (lists comma-separated), e.g. --set n_aux=20000 --set omegas=0,1,2. Repeatable; the settings are listed in settings.json.")] = None,
        jobs: Annotated[Optional[int], typer.Option(help="Processes that measure chunks of the seeds side by side (this one and jobs - 1 workers), so an experiment uses every usable core (the CPU affinity), at most one process per seed; the table and summary are those of one process. 1: this process only. mad-loops (closed form) and --device cuda: always one process [default: the usable cores].", show_default=False)] = None,
        threads: Annotated[Optional[int], typer.Option(help="Torch threads per process [default: 1; the usable cores with --device cuda].", show_default=False)] = None,
        progress: Annotated[bool, typer.Option("--progress/--quiet", help="Show progress on stderr.")] = True,
    ) -> None:
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
        module = load(name.value)
        assignments = list(set_ or [])
        if seeds is not None:
            assignments.append(f"seeds={seeds}")
        if device is not None:
            assignments.append(f"device={device}")
        settings = override(module.SCALES[scale.value], assignments)
        try:
            settings.validate()
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_environment()
        processes, threads, _ = layout(settings.seeds, jobs, getattr(settings, "device", "cpu"), threads)
        if not hasattr(module, "measure"):      # mad-loops: closed form, one process
            processes = 1
        if progress:
            stderr.print(f"{name.value}: {settings.seeds} seeds, {describe(processes, threads)}",
                         markup=False, highlight=False)
        folder = out or Path("runs") / "experiments" / f"{name.value}-{scale.value}"
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} exists and is not a folder")
        start = time.perf_counter()
        try:
            result = _run(name.value, settings, processes, threads, progress, start)
        except ConfigError:
            raise
        except ValueError as err:  # e.g. a curated set that the base model cannot fill
            raise ConfigError(f"{name.value}: {err}") from None
        seconds = time.perf_counter() - start
        extra = {"seconds": round(seconds, 1), "processes": processes, "torch_threads": threads}
        if hasattr(settings, "learner"):  # the toy DDPM as the experiment built it
            from madlab.experiments.common import ddpm_backend
            extra["ddpm"] = ddpm_backend(settings.device, learner=settings.learner,
                                         batch_size=settings.batch_size,
                                         lr=settings.lr).config.to_dict()
        paths = write_outputs(folder, name.value, scale.value, settings, extra, result)
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
