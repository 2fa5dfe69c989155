"""A sweep folder's Slurm jobs, known without accounting storage: what `squeue` says of them
(Squeue, JobState), which job runs which task (JobBook, DIR/slurm/jobs.json), and `scancel`
(cancel_jobs). No `sacct`: clusters without slurmdbd work quietly."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from madlab import store
from madlab.config import ConfigError
from madlab.executors.common import last_line

SLURM_DIR = "slurm"                    # DIR/slurm: submitit's files and jobs.json
JOBS_FILE = "jobs.json"
# squeue states of a job that is over (anything else squeue lists is queued, running or requeued;
# PREEMPTED counts as live because a requeued job passes through it)
TERMINAL = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                      "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})


@dataclass(frozen=True)
class JobState:
    state: str                        # squeue's %T: PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str = ""                  # squeue's %r
    comment: str = ""                 # squeue's %k (our submission token)
    array: str = ""                   # the array's job id (%F; a plain job's own id)

    @property
    def live(self) -> bool:
        return self.state not in TERMINAL


class Squeue:
    """This user's jobs as slurmctld knows them (queued, running and, for MinJobAge, finished),
    one `squeue` call per look; no accounting storage (sacct) needed."""

    FORMAT = "%i|%F|%T|%r|%k"       # job (ARRAY_INDEX), array job id, state, reason, comment

    def __init__(self):
        self.failing = False

    def states(self, must: bool = False) -> dict[str, JobState] | None:
        """Job id (array elements as ARRAY_INDEX) -> state; None if squeue failed (reported once),
        ConfigError instead when `must`."""
        import getpass

        cmd = ["squeue", "--noheader", "--array", "--states=all", f"--user={getpass.getuser()}",
               f"--format={self.FORMAT}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            problem = None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")
        except (OSError, subprocess.TimeoutExpired) as err:
            done, problem = None, str(err)
        if problem:
            if must:
                raise ConfigError(f"--executor slurm: squeue failed: {last_line(problem)}")
            if not self.failing:
                print(f"slurm: squeue failed ({last_line(problem)}); retrying", file=sys.stderr, flush=True)
            self.failing = True
            return None
        self.failing = False
        jobs = {}
        for line in done.stdout.splitlines():
            parts = line.strip().split("|", 4)
            if len(parts) == 5:
                job, array, state, reason, comment = parts
                jobs[job] = JobState(state.split()[0].rstrip("+"), reason, comment, array)
        return jobs


@dataclass
class JobBook:
    """DIR/slurm/jobs.json: every submission of this sweep directory to Slurm, in order: a token
    (also the jobs' --comment), its tasks, and their Slurm job ids once sbatch returned (null
    before: then the token finds them in squeue)."""
    path: Path
    submissions: list = field(default_factory=list)

    @classmethod
    def load(cls, out: Path) -> "JobBook":
        path = Path(out) / SLURM_DIR / JOBS_FILE
        try:
            data = json.loads(path.read_text())
            return cls(path, list(data["submissions"]))
        except FileNotFoundError:
            return cls(path)
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{path} is unreadable ({err}); remove it to resubmit every unfinished task")

    def save(self) -> None:
        store.atomic_write_bytes(self.path, json.dumps({"submissions": self.submissions}, indent=1).encode())

    def add(self, token: str, task_ids: list[str]) -> None:
        self.submissions.append({"token": token, "time": time.time(), "tasks": task_ids, "jobs": None})

    def set_jobs(self, token: str, job_ids: list[str]) -> None:
        for sub in self.submissions:
            if sub["token"] == token:
                sub["jobs"] = list(job_ids)

    def resolve(self, known: dict[str, JobState]) -> None:
        """Fill in the job ids of submissions whose driver died before it could write them."""
        changed = False
        for sub in self.submissions:
            if sub["jobs"] is not None:
                continue
            arrays = {s.array for s in known.values() if s.comment == sub["token"]}
            if len(arrays) == 1:
                (array,) = arrays
                n = len(sub["tasks"])
                sub["jobs"] = [array] if n == 1 and array in known else [f"{array}_{i}" for i in range(n)]
                changed = True
        if changed:
            self.save()

    def job_of(self, task_id: str) -> str | None:
        """The Slurm job of the task's latest submission (None: never submitted, or unknown)."""
        for sub in reversed(self.submissions):
            if task_id in sub["tasks"]:
                return sub["jobs"][sub["tasks"].index(task_id)] if sub["jobs"] else None
        return None

    def token_of(self, task_id: str) -> str | None:
        for sub in reversed(self.submissions):
            if task_id in sub["tasks"]:
                return sub["token"]
        return None

    def submitted(self, job: str) -> float:
        for sub in self.submissions:
            if sub["jobs"] and job in sub["jobs"]:
                return sub["time"]
        return 0.0


def cancel_jobs(jobs: list[str]) -> None:
    """scancel this sweep's live jobs (the driver was stopped by a signal); say so in one line."""
    if not jobs:
        return
    try:
        subprocess.run(["scancel", *jobs], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        print(f"slurm: could not cancel jobs {id_range(jobs)} ({err}); cancel them with scancel",
              file=sys.stderr, flush=True)
        return
    deadline = time.monotonic() + 60          # until Slurm has let them go (COMPLETING is live):
    queue = Squeue()                           # a rerun then resubmits them at once
    while time.monotonic() < deadline:
        states = queue.states()
        if states is not None and not any(states[j].live for j in jobs if j in states):
            break
        time.sleep(0.5)
    print(f"slurm: cancelled {len(jobs)} queued or running job{'s' * (len(jobs) != 1)} "
          f"({id_range(jobs)}); their finished generations are kept", file=sys.stderr, flush=True)


def id_range(jobs) -> str:
    """`first .. last` of some job ids (one id alone)."""
    ids = sorted(jobs)
    return ids[0] if len(ids) == 1 else f"{ids[0]} .. {ids[-1]}"
