"""A Slurm job's entry point that Slurm may stop and requeue: `SlurmTask(target)(out, task, threads)`.

submitit calls `checkpoint()` when the job receives its preemption/time-limit signal (USR2, sent
`signal_delay_s` before the limit, or by `scancel --signal=USR2`): it returns the same call,
which submitit pickles and requeues under the same job id. Nothing else needs saving here: the
task resumes from its own per-generation checkpoint on the shared disk (madlab.store.TaskCheckpoint),
recomputing at most the generation it was in. A plain `scontrol requeue` (preemption with
PreemptMode=REQUEUE) reruns the original call and resumes the same way. Imported only by the Slurm
executor (it needs submitit).
"""
from __future__ import annotations

from typing import Callable

from submitit.helpers import Checkpointable, DelayedSubmission


class SlurmTask(Checkpointable):
    """`target(out, task, threads)` as a checkpointable submitit callable."""

    def __init__(self, target: Callable):
        self.target = target

    def __call__(self, out: str, task, threads: int = 1) -> dict:
        return self.target(out, task, threads)

    def checkpoint(self, out: str, task, threads: int = 1) -> DelayedSubmission:
        """Requeue the same call: it continues after the task's last checkpointed generation."""
        return DelayedSubmission(self, out, task, threads)
