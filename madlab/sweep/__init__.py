"""Sweeps: a grid of RunConfigs times chunks of seeds = tasks with stable ids, run resumably.

    spec     the sweep file and command-line grid (SweepSpec) and its tasks (Task): pure
    worker   one task run where it runs (compute_task, record, execute_task): the process boundary
    driver   the sweep folder on the driver's side (open_sweep, sessions, states, run_sweep)

Callers use the names below (`from madlab.sweep import SweepSpec, run_sweep`).
"""
from madlab.sweep.driver import (RESULT_SETTINGS, SETTINGS, begin_session, changed_results,
                                 configuration_key, end_session, generations_done, load_tasks, manifest_for,
                                 merge, needs_merge, open_sweep, run_sweep, seed_overlaps, states,
                                 without_held_seeds)
from madlab.sweep.driver import _speed  # madlab.commands.run reads it (a held task's speed-only options)
from madlab.sweep.spec import (FIELDS, FORMAT, MAX_TASKS, NAME, NOT_GRIDDED, SweepSpec, Task, check_name,
                               chunk_tasks, coerce, expected_rows, field_name, parse_values, task_id,
                               task_identity)
from madlab.sweep.worker import (WORKER, Diverged, check_finite, compute_task, execute_task, failure_record,
                                 record, record_crash, run_config)
