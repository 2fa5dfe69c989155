"""Run and sweep directories on disk: configs, per-task Parquet and one merged table, all atomic.

    layout        where each file lies in a run or sweep folder (the names, task_paths)
    atomic        atomic writes (temporary file, fsync, rename), strict JSON, DiskError
    verified      task and checkpoint files whose footer says what they belong to, with a SHA-256
    tasks         a sweep's manifest, each task's result / failure / running mark, the merged table
    runs          what a folder is (run, sweep, neither) and a run's config.json and results.parquet
    lock          one driver per folder (SweepLock) and a worker's Lease on it
    checkpoints   a task's per-generation checkpoint (TaskCheckpoint) and every row on disk so far

Callers use the names below (`from madlab import store; store.task_state(...)`).
"""
from madlab.store.atomic import (FILE_MODE, DiskError, atomic_path, atomic_write_bytes, atomic_write_parquet,
                                 disk_error, json_safe, to_json)
from madlab.store.checkpoints import TaskCheckpoint, checkpointed_generations, partial_rows, state_shapes
from madlab.store.layout import (CHECKPOINT, CONFIG, LOCK, MANIFEST, MERGED_KEY, PROVENANCE_KEY, RESULTS, TASKS,
                                 task_paths)
from madlab.store.lock import Abandoned, Lease, SweepLock, is_locked, lock_session
from madlab.store.runs import (check_format, check_kind, check_out, check_run_dir, config_record, folder_kind,
                               load_results, write_config, write_results, written_by_0_1)
from madlab.store.tasks import (check_task_file, clear_running, is_running, mark_running, merge_task_results,
                                merged_rows, merged_tasks, read_failure, read_manifest, readable_rows,
                                remove_stale_temporaries, task_provenance, task_state, write_manifest,
                                write_task_failure, write_task_result)
from madlab.store.verified import (CHECKPOINT_FORMAT, IDENTITY_KEY, TASK_FORMAT, Unverified, check_rows,
                                   frame_identity, read_identity, read_verified, verified_parquet_bytes)
