"""`madlab run`: one configuration, all its seeds, a run directory and a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click
from rich.console import Console

from madlab.commands.options import command, config_options, option
from madlab.config import EVAL_PANEL, RunConfig

stderr = Console(stderr=True)


def print_summary(frame, out: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from analysis.metrics import LABELS, OUTLIER_RADIUS, OUTLIER_SHARE, SQUARED
    from analysis.paper import LEVEL
    from analysis.report import OWN_RATE
    from analysis.summary import run_summary

    summary = run_summary(frame)
    console = Console(width=max(Console().width, 150))   # the table's 8 columns fit on one line
    table = Table(title=f"madlab run {out}")
    band = f"{LEVEL:.0%} band"
    for col in ("metric", "seeds", "E[dist(G^1)]", "gen", "E[dist(G^T)]", f"ratio by mean [{band}]",
                "median G^1 → G^T", f"ratio by median [{band}]"):
        table.add_column(escape(col), justify="right")
    for row in summary[summary["metric"] != OUTLIER_SHARE].itertuples():
        name = row.metric if row.metric not in SQUARED.values() else f"{row.metric} ({LABELS[row.metric]})"
        table.add_row(name, str(row.seeds), f"{row.first:.4f} ± {row.first_se:.4f}",
                      str(row.last_generation), f"{row.last:.4f} ± {row.last_se:.4f}",
                      f"{row.ratio:.3f} [{row.ratio_lo:.3f}–{row.ratio_hi:.3f}]",
                      f"{row.median_first:.4f} → {row.median_last:.4f}",
                      f"{row.median_ratio:.3f} [{row.median_lo:.3f}–{row.median_hi:.3f}]")
    console.print(table)
    share = summary[summary["metric"] == OUTLIER_SHARE]
    if len(share):
        s = share.iloc[0]
        last = frame[(frame["metric"] == OUTLIER_SHARE) & (frame["generation"] == s.last_generation)]["value"]
        console.print(escape(
            f"outlier share (samples beyond Mahalanobis radius {OUTLIER_RADIUS:g} under p_r; p_r's own "
            f"{OWN_RATE:.2g}): G^1 mean {s.first:.2g}, median {s.median_first:.2g}; G^{s.last_generation} "
            f"mean {s.last:.2g}, median {s.median_last:.2g}, largest seed {last.max():.2g}"), soft_wrap=True)
    console.print(f"results: pandas.read_parquet('{out / 'results.parquet'}')  (± is one standard error "
                  "over seeds; bands: percentile bootstrap over seeds)", soft_wrap=True)


def run_chunks(out: Path, cfg: RunConfig, chunk: int) -> list:
    """The run's tasks: the chunks its directory records (a rerun with another --jobs, or on a
    machine with another core count, resumes the same tasks), else the seeds split into chunks of
    `chunk` seeds, one per process (madlab.cores.layout; at most --seed-chunk seeds each)."""
    import dataclasses

    from madlab.store import read_manifest
    from madlab.sweep import RESULT_SETTINGS, Task, _speed, chunk_tasks

    manifest = read_manifest(out)
    if manifest is not None and manifest.get("kind") == "run" and manifest.get("tasks"):
        held = [Task.from_dict(t) for t in manifest["tasks"]]
        if all(t.run == cfg.run_id() for t in held):
            flat = cfg.flat()     # this command's settings (open_sweep refuses a changed RESULT_SETTINGS)
            mine = {**_speed(flat), **{k: flat[k] for k in RESULT_SETTINGS if k in flat}}
            return [Task(t.id, t.run, t.point, {**t.config, **mine}) for t in held]
    return chunk_tasks(dataclasses.replace(cfg, seed_chunk=min(cfg.seed_chunk, chunk)))


OWN_OPTIONS = [
    option("--out", type=click.Path(path_type=Path), panel=EVAL_PANEL, help="Run directory [default: runs/<loop>-<algo>-<run id>]. Rerunning the same command reuses it; a different run there is refused."),
    option("--progress/--quiet", default=True, show_default=True, panel=EVAL_PANEL, help="Show a progress bar on stderr."),
    option("--jobs", type=int, panel=EVAL_PANEL, help="Processes that run chunks of the seeds side by side, one torch thread each, so a run uses every usable core (the CPU affinity: taskset, Slurm's --cpus-per-task), at most one process per seed; a seed's numbers do not depend on the chunking (bit for bit). 1: one process (this one). --device cuda: always one process [default: the usable cores]."),
    option("--threads", type=int, panel=EVAL_PANEL, help="Torch threads per process, exact OT included (more than one rarely pays on the CPU; see madlab/cores.py) [default: 1; the usable cores with --device cuda]."),
    option("--wandb", metavar="PROJECT", panel=EVAL_PANEL, help="Also log the finished run to this Weights & Biases project (madlab[wandb]): its resolved configuration, provenance and per-generation mean, median, 5-95 % band and outlier share. Runs after the run; a W&B failure is a warning. WANDB_MODE=offline logs to ./wandb."),
]


def register(app: click.Group) -> None:
    def run(out: Optional[Path], progress: bool, jobs: Optional[int], threads: Optional[int],
            wandb: Optional[str], **options) -> None:
        """Run one self-consuming loop for SEEDS independent seeds and summarise E[dist(G^t, p_r)].

        \b
        Example (the paper's section 4.2.1 toy, SIMS at w = 3):
        madlab run --loop augment --algo sims --omega 3 --gens 100
        """
        from madlab.commands.sweep import run_with_progress
        from madlab.cores import describe, layout
        from madlab.executors import LocalExecutor
        from madlab.plan import make_plan
        from madlab.runner import check_environment
        from madlab.store import SweepLock, check_run_dir, load_results, read_failure, write_config
        from madlab.sweep import SweepSpec, begin_session, needs_merge, open_sweep, states

        cfg = RunConfig.from_flat(options).validate()
        check_environment()
        if wandb is not None:
            from madlab import tracking
            tracking.require()               # without the extra: one line, exit 2, nothing run
        out_dir = out or Path("runs") / f"{cfg.loop.kind}-{cfg.algo.name}-{cfg.run_id()}"
        from madlab.samples import configure
        configure(cfg, out_dir)              # --save-samples: into OUT/samples/<run id>
        # the run directory is a one-configuration sweep (madlab.sweep): tasks = chunks of seeds
        check_run_dir(out_dir, cfg)          # a different run there: one line, exit 2, nothing written
        spec = SweepSpec(name=out_dir.name, base=cfg.flat())
        # bad --jobs/--threads: one line, nothing written
        processes, threads, chunk = layout(cfg.seeds, jobs, cfg.device, threads)
        chunks = run_chunks(out_dir, cfg, chunk)  # per-core chunks, or the ones the directory records
        open_sweep(out_dir, spec, chunks, kind="run", write=False)
        with SweepLock(out_dir) as lock:     # the same run going on there: refused, nothing written
            tasks = open_sweep(out_dir, spec, chunks, kind="run")
            if all(s == "done" for s in states(out_dir, tasks).values()) and not needs_merge(out_dir, tasks):
                stderr.print(f"{out_dir} already holds this run's results; nothing to redo.")
                print_summary(load_results(out_dir), out_dir)
                _log_wandb(wandb, out_dir)
                return
            session = begin_session(out_dir, tasks)
            write_config(out_dir, cfg, session)
            # one process per pending chunk, up to the layout's (the recorded chunks may be fewer)
            pending = sum(s != "done" for s in states(out_dir, tasks).values())
            processes = max(1, min(processes, pending))
            stderr.print(f"{make_plan(out_dir, tasks, threads=threads).line(processes)}; "
                         f"{describe(processes, threads)}", markup=False, soft_wrap=True)
            label = f"{cfg.loop.kind}/{cfg.algo.name} w={cfg.algo.omega:g}"
            counts = run_with_progress(out_dir, tasks, LocalExecutor(jobs=processes, threads=threads), label,
                                       progress, lock=lock, session=session)
        if counts["failed"]:
            errors = [f["error"] for t in tasks if (f := read_failure(out_dir, t.id))]
            stderr.print(f"madlab: run failed: {errors[0] if errors else 'unknown error'}", markup=False)
            raise SystemExit(1)
        print_summary(load_results(out_dir), out_dir)
        _log_wandb(wandb, out_dir)

    app.add_command(command("run", run, [*config_options("run"), *OWN_OPTIONS]))


def _log_wandb(project: Optional[str], out: Path) -> None:
    """--wandb PROJECT: the finished directory's configurations to W&B (madlab.tracking)."""
    if project is not None:
        from madlab import tracking
        n = tracking.log_directory(project, out)
        if n:
            stderr.print(f"W&B: {n} run{'s' * (n != 1)} logged to project {project}", markup=False)
