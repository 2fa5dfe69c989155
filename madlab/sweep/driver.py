"""The driver side of a sweep: check a folder against the sweep and write its manifest
(open_sweep), note each command's session, and run the tasks not yet done with an executor,
then merge every finished task into results.parquet (run_sweep). One driver holds a folder at a
time (madlab.store.SweepLock); the tasks themselves run in madlab.sweep.worker.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Callable

from madlab import __version__, store
from madlab.config import ConfigError, option_spec
from madlab.sweep.spec import FORMAT, SweepSpec, Task, expected_rows, task_id, task_identity


def manifest_for(spec: SweepSpec, tasks: list[Task], kind: str) -> dict:
    return {"format": FORMAT, "madlab": __version__, "kind": kind, "name": spec.name,
            "specs": [spec.to_dict()], "tasks": [t.to_dict() for t in tasks]}


def seed_overlaps(tasks: list[Task]) -> str | None:
    """A (run, seed) covered by two different tasks, described, or None."""
    owner: dict[tuple[str, int], Task] = {}
    for task in tasks:
        for seed in task.seeds():
            other = owner.setdefault((task.run, seed), task)
            if other.id != task.id:
                return (f"seed {seed} of run {task.run} would be run by two tasks (seeds "
                        f"{other.seeds().start}-{other.seeds().stop - 1} and "
                        f"{task.seeds().start}-{task.seeds().stop - 1}): the seed chunk changed; "
                        f"use this directory's seed chunk of {other.config['seed_chunk']}")
    return None


def configuration_key(task: Task) -> str:
    """What a task's configuration computes, whatever its seeds: its options but the seed range
    and the speed-only ones (runs that differ only in --seeds/--first-seed share it)."""
    cfg = task.run_config()
    identity = {k: v for k, v in cfg.identity().items() if k not in ("seeds", "first_seed")}
    return json.dumps(identity, sort_keys=True, default=str)


def without_held_seeds(held: list[Task], added: list[Task]) -> list[Task]:
    """`added` tasks less the seeds that held tasks of the same configuration but another run id
    already cover (`--extend --seeds 6` after `--seeds 4` runs seeds 4 and 5 only, under the new
    run id, instead of running seeds 0-3 a second time)."""
    covered: dict[str, dict[str, set[int]]] = {}     # configuration -> run id -> seeds
    for task in held:
        covered.setdefault(configuration_key(task), {}).setdefault(task.run, set()).update(task.seeds())
    out = []
    for task in added:
        runs = covered.get(configuration_key(task), {})
        other = set().union(*(seeds for run, seeds in runs.items() if run != task.run))
        seeds = [s for s in task.seeds() if s not in other]   # the same run id: seed_overlaps decides
        if len(seeds) == len(task.seeds()):
            out.append(task)
            continue
        while seeds:                                     # the uncovered seeds, in contiguous runs
            run = [seeds.pop(0)]
            while seeds and seeds[0] == run[-1] + 1:
                run.append(seeds.pop(0))
            config = {**task.config, "first_seed": run[0], "seeds": len(run)}
            out.append(Task(task_id(task.run, run[0], len(run)), task.run, task.point, config))
    return out


def open_sweep(out: Path, spec: SweepSpec, tasks: list[Task], *, extend: bool = False,
               kind: str = "sweep", write: bool = True) -> list[Task]:
    """Check `out` against this sweep and write its manifest; return all the directory's tasks
    (with --extend: the old ones, then the new). Raises ConfigError, writing nothing, if `out`
    holds something else. With write=False it only checks (before the sweep's lock is taken).

    Tasks already in the manifest keep their seeds and chunking, but take this command's device
    and keep_checkpoints: they never change a number."""
    out = Path(out)
    store.check_out(out)
    manifest = store.read_manifest(out)
    if manifest is not None:
        store.check_format(out, manifest)
        store.check_kind(out, manifest, kind)
    if manifest is None:
        if out.exists() and any(p.name != store.LOCK for p in out.iterdir()) and not (out / store.CONFIG).exists():
            raise ConfigError(f"--out {out} is not empty and holds no madlab sweep; choose another --out")
        problem = seed_overlaps(tasks)
        if problem:
            raise ConfigError(problem)
        if write:
            store.write_manifest(out, manifest_for(spec, tasks, kind))
        return tasks
    current = {t.id: t for t in tasks}
    recorded = [Task.from_dict(t) for t in manifest["tasks"]]
    for t in recorded:
        if t.id in current and (problem := changed_results(t.config, current[t.id].config)):
            raise ConfigError(f"--out {out} {problem}")
    held = [Task(t.id, t.run, t.point, {**t.config, **_speed(current[t.id].config)}) if t.id in current else t
            for t in recorded]
    held_ids, new_ids = {t.id for t in held}, {t.id for t in tasks}
    if write and [t.config for t in held] != [t.config for t in recorded]:
        manifest["tasks"] = [t.to_dict() for t in held]     # the settings this command applies
        store.write_manifest(out, manifest)
    if held_ids == new_ids:
        return held
    added = without_held_seeds(held, [t for t in tasks if t.id not in held_ids])
    added = [t for t in added if t.id not in held_ids]
    problem = seed_overlaps(held + added)
    if problem:
        raise ConfigError(f"{out}: {problem}")
    if not extend:
        missing = len(held_ids - new_ids)
        what = "run" if manifest.get("kind") == "run" and kind == "run" else "sweep"
        raise ConfigError(f"--out {out} already holds a different {what} ({len(held)} tasks; this one "
                          f"has {len(added)} new and lacks {missing} of them); rerun the same "
                          f"command to resume, add --extend to add the new tasks, or choose "
                          f"another --out")
    if write and added:
        manifest["tasks"] = [t.to_dict() for t in held + added]
        manifest["specs"] = manifest.get("specs", []) + [spec.to_dict()]
        store.write_manifest(out, manifest)
    return held + added


SETTINGS = ("device", "keep_checkpoints", "save_samples", "samples_dir", "edm_checkpoints")
RESULT_SETTINGS = {"tails": True}    # outside the run id, but they change which rows are recorded


def _speed(config: dict) -> dict:
    """The options of a task's config that change speed or where files go, not its numbers: a
    rerun applies this command's."""
    return {k: config[k] for k in SETTINGS if k in config}


def changed_results(held: dict, new: dict) -> str | None:
    """Why a held task cannot be resumed with `new`'s options (a setting outside the run id that
    changes its rows differs), or None."""
    for key, default in RESULT_SETTINGS.items():
        was, now = held.get(key, default), new.get(key, default)
        if was != now:
            return (f"was run with {_as_flag(key, was)}, this command has {_as_flag(key, now)}, which "
                    f"changes the rows recorded; rerun with {_as_flag(key, was)} to resume it, or "
                    "choose another --out")
    return None


def _as_flag(key: str, value) -> str:
    """An option's value as it is spelled on the command line (--tails / --no-tails)."""
    flag = option_spec(key).flag
    if isinstance(value, bool):
        return flag if value else f"--no-{flag.removeprefix('--')}"
    return f"{flag} {value}"


def begin_session(out: Path, tasks: list[Task]) -> dict:
    """Note this command in the manifest's `sessions` (its provenance: madlab.provenance), with a
    warning on stderr when the code differs from the session before it; call under the lock."""
    from madlab.provenance import code_of, provenance, same_code

    manifest = store.read_manifest(out) or {}
    record = provenance(tasks[0].config.get("device", "cpu") if tasks else "cpu")
    sessions = manifest.setdefault("sessions", [])
    if sessions:
        last, differs = sessions[-1], not same_code(sessions[-1], record)
    else:                 # written before sessions were recorded: only its version is known
        last = {"madlab": manifest.get("madlab")}
        differs = bool(manifest.get("tasks")) and last["madlab"] != record["madlab"]
    if differs:
        print(f"madlab: warning: {out} was last run by {code_of(last)}, this is {code_of(record)}: "
              "its finished tasks and generations are kept, so the results may mix both",
              file=sys.stderr, flush=True)
    sessions.append({**record, "ended": None, "outcome": None})
    store.write_manifest(out, manifest)
    return record


def end_session(out: Path, record: dict, outcome: str) -> None:
    """Close this command's session: its end time and outcome (done, failed, interrupted, error)."""
    from madlab.provenance import now

    manifest = store.read_manifest(out)
    if manifest is None:
        return
    for session in reversed(manifest.get("sessions", [])):
        if session.get("started") == record["started"] and session.get("command") == record["command"]:
            session.update(ended=now(), outcome=outcome)
            store.write_manifest(out, manifest)
            return


def load_tasks(out: Path) -> tuple[dict, list[Task]]:
    manifest = store.read_manifest(out)
    if manifest is None:
        raise ConfigError(f"{out} holds no madlab sweep ({store.MANIFEST} not found)")
    return manifest, [Task.from_dict(t) for t in manifest["tasks"]]


def states(out: Path, tasks: list[Task]) -> dict[str, str]:
    """done | failed | pending per task id; a task file that does not hold the task's rows (torn,
    truncated, or another task's by its footer) counts as pending."""
    return {t.id: store.task_state(out, t.id, expected_rows(t), task_identity(t)) for t in tasks}


def merge(out: Path, tasks: list[Task]) -> int:
    """Write `out/results.parquet` from every finished task (manifest order); rows merged."""
    return store.merge_task_results(out, [t.id for t in tasks])


def run_sweep(out: Path, tasks: list[Task], executor, *,
              on_start: Callable[[list[Task]], None] | None = None,
              on_done: Callable[[dict], None] | None = None,
              on_step: Callable[[int], None] | None = None,
              lock: store.SweepLock | None = None) -> dict[str, int]:
    """Run every task of `tasks` not yet done in `out` (failed ones are retried) with
    `executor`, then merge all finished tasks into `out/results.parquet`. Holds the sweep's lock
    throughout (`lock`: one the caller already holds). Returns counts of done / failed / pending
    tasks and merged rows. On a signal the executor stops its workers, the tasks it was running
    lose their running marks and the exception goes on (their finished generations stay on disk)."""
    out = Path(out)
    with contextlib.nullcontext(lock) if lock is not None else store.SweepLock(out):
        store.remove_stale_temporaries(out)
        before = states(out, tasks)
        for task in tasks:          # verify every file read back: a bad one is named and redone
            expect = {**task_identity(task), "rows": expected_rows(task)}
            if problem := store.check_task_file(out, task.id, expect):
                print(f"madlab: task {task.id}: {problem}", file=sys.stderr, flush=True)
                before[task.id] = "pending" if before[task.id] == "done" else before[task.id]
            if before[task.id] != "done" and (problem := store.TaskCheckpoint(
                    out, task.id, keep=bool(task.config.get("keep_checkpoints")),
                    expect=task_identity(task)).check()):
                print(f"madlab: task {task.id}: {problem}", file=sys.stderr, flush=True)
        todo = [t for t in tasks if before[t.id] != "done"]
        store.clear_running(out, [t.id for t in todo])
        if on_start is not None:
            on_start(todo)
        try:
            if todo:
                executor.run(out, todo, on_done or (lambda outcome: None), on_step)
        except BaseException:
            store.clear_running(out, [t.id for t in todo])
            raise
        after = states(out, tasks)
        if needs_merge(out, tasks, after):
            merge(out, tasks)
    counts = {s: sum(1 for v in after.values() if v == s) for s in ("done", "failed", "pending")}
    rows = store.merged_rows(out)
    return {**counts, "rows": rows, "skipped": len(tasks) - len(todo)}


def generations_done(out: Path, tasks: list[Task]) -> int:
    """Generations finished so far over `tasks`: all of a done task's, a running or stopped
    one's checkpointed ones."""
    return sum(t.config["gens"] if store.task_state(out, t.id) == "done"
               else store.checkpointed_generations(out, t.id) for t in tasks)


def needs_merge(out: Path, tasks: list[Task], state: dict[str, str] | None = None) -> bool:
    """True unless `out/results.parquet` holds exactly the finished tasks."""
    state = state or states(out, tasks)
    done = [t.id for t in tasks if state[t.id] == "done"]
    return store.merged_tasks(out) != done
