"""`madlab status DIR`: a sweep's done / failed / pending tasks, with the failed ones' errors."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from madlab import store
from madlab.commands.options import argument, command, option


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def status_counts(out: Path) -> dict:
    """{name, kind, tasks, active, merged, done, failed, pending, running} for the sweep or run
    directory `out`."""
    from madlab.sweep import load_tasks, needs_merge, states

    manifest, tasks = load_tasks(out)
    state = states(out, tasks)
    active = store.is_locked(out)
    counts = {s: [t for t in tasks if state[t.id] == s] for s in ("done", "failed", "pending")}
    counts["running"] = [t for t in counts["pending"] if active and store.is_running(out, t.id)]
    partial = {t.id: store.checkpointed_generations(out, t.id) for t in tasks if state[t.id] != "done"}
    return {"name": manifest.get("name", out.name), "kind": manifest.get("kind", "sweep"),
            "sessions": manifest.get("sessions", []),
            "tasks": tasks, "active": active, "merged": not needs_merge(out, tasks, state),
            "generations": sum(t.config["gens"] for t in tasks),
            "partial": {k: v for k, v in partial.items() if v}, **counts}


OWN_OPTIONS = [
    argument("out", type=click.Path(path_type=Path), help="A sweep (or run) directory."),
    option("--pending", is_flag=True, help="Also list the pending tasks."),
    option("--traceback", is_flag=True, help="Show the last frames of each failed task's traceback."),
]


def register(app: click.Group) -> None:
    def status(out: Path, pending: bool, traceback: bool) -> None:
        """Show how far a sweep or run got: done / failed / pending tasks, and why the failed ones failed.

        A failed or pending task is run again by rerunning the same `madlab sweep` or `madlab run` command.
        """
        info = status_counts(out)
        console = Console()
        kind, n = info["kind"], len(info["tasks"])
        line = (f"{kind} {info['name']}: {plural(n, 'task')} — {len(info['done'])} done, "
                f"{len(info['failed'])} failed, {len(info['pending'])} pending")
        if info["active"]:
            line += f" ({len(info['running'])} running now)"
        console.print(escape(line))
        finished = sum(t.config["gens"] for t in info["done"]) + sum(info["partial"].values())
        console.print(escape(f"generations: {finished} of {info['generations']} finished"
                             + (f" ({sum(info['partial'].values())} of them checkpointed by "
                                f"{plural(len(info['partial']), 'unfinished task')}: a rerun continues "
                                "after them; their rows are in tasks/<id>.ckpt/)" if info["partial"] else "")))
        if info["sessions"]:
            from madlab.provenance import summary

            last = info["sessions"][-1]
            earlier = len(info["sessions"]) - 1
            console.print(escape(f"last run: {summary(last)}"
                                 + (f" ({plural(earlier, 'earlier session')} in sweep.json)" if earlier else "")),
                          soft_wrap=True)
        results = out / store.RESULTS
        rows = store.merged_rows(out)
        if rows is None:
            console.print(escape(f"results: {results} does not read back (torn or corrupt); rerun the "
                                 f"{kind} to merge it again from the task files"))
        elif results.exists():
            console.print(escape(f"results: {results} ({plural(rows, 'row')}"
                                 + ("" if info["merged"] else f"; not up to date: rerun the {kind} to merge")
                                 + ")"))
        elif info["done"]:
            console.print(escape(f"results: not merged yet ({plural(len(info['done']), 'finished task')} "
                                 f"under {out / store.TASKS}; the {kind} merges them into {store.RESULTS} "
                                 "when it ends, a rerun of the same command too)"))
        elif info["partial"]:
            console.print(escape(f"results: not merged yet (no task of this {kind} has finished; "
                                 "`madlab report` reads the finished generations' rows)"))
        else:
            console.print(f"results: none yet (no task of this {kind} has finished)")
        if info["failed"]:
            table = Table(title="failed tasks", show_lines=False)
            for col in ("task", "configuration", "kind", "error"):
                table.add_column(col, overflow="fold")
            for task in info["failed"]:
                record = store.read_failure(out, task.id) or {}
                error = record.get("error", "")
                if traceback and record.get("traceback"):
                    error += "\n" + record["traceback"]
                table.add_row(task.id, escape(task.label()), record.get("kind", ""), escape(error))
            console.print(table)
        if pending and info["pending"]:
            table = Table(title="pending tasks")
            for col in ("task", "configuration", "running"):
                table.add_column(col, overflow="fold")
            for task in info["pending"]:
                table.add_row(task.id, escape(task.label()), "yes" if task in info["running"] else "")
            console.print(table)

    app.add_command(command("status", status, OWN_OPTIONS))
