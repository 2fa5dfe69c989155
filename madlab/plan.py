"""What a sweep or run is about to do, before it starts: its tasks, seed-generations and an
estimated cost from a measured cost per seed-generation.

The estimate is seconds per unit of work x the work left, where a configuration's work per
seed-generation (`work`) is a rough model of what it computes (training rows x epochs, sampled
rows x steps, exact OT on n_eval points: each backend's cost model, madlab.backends), so one
measurement per backend scales to every configuration of a grid. The seconds per unit of work
come from, in this order:

1. the finished tasks already in the directory: their timing columns (wall seconds of training,
   sampling and evaluation per generation, measured where they ran);
2. a probe: the first two generations of the heaviest pending task of each backend, with its
   own seed chunk (up to PROBE_SEEDS seeds trained together, as the task will train them), run
   here in this process with the tasks' torch threads; the second generation alone is timed, since
   the first carries the set-up and the first calls (a cold first generation of the Gaussian fit
   costs ~10x a warm one; a lone seed costs 2-3x a seed in a chunk of 8-16: both made the old
   one-seed, one-generation probe's estimates 2-40x too high). It runs only for the local executor
   and only when it costs at most PROBE_SHARE of the work left.

A resumed run or sweep counts only what is left: a task's generations already checkpointed on disk
are neither counted nor estimated. It stays an estimate: a shared machine's load changes the rate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loops.kinds import training_set_size
from madlab import store
from madlab.backends import BACKENDS

PROBE_SEEDS = 16        # at most this many of a task's seeds in the probe (a chunk's per-seed cost)
PROBE_GENERATIONS = 2   # the probe's generations; the last one alone is timed
PROBE_SHARE = 0.1       # the probe runs only when it costs at most this share of the work left


def work(options: dict[str, Any], generations: int | None = None, first: int = 1) -> float:
    """Relative work of one seed-generation of a configuration (flat options), averaged over its
    generations first..`generations` (default: 1..gens): its backend's cost model
    (madlab.backends) at the mean |D^t| (loops.kinds) and the point pairs of exact OT (w1/w2 on
    n_eval points). Units are comparable within one backend only."""
    o = options
    gens = generations or o["gens"]
    sizes = [training_set_size(o["loop"], t, o["n_real"], o["n_synth"]) for t in range(first, gens + 1)]
    pairs = o["n_eval"] ** 2 * sum(m in ("w1", "w2") for m in o.get("metric") or [])
    return BACKENDS[o["backend"]].work(o, sum(sizes) / len(sizes), pairs)


@dataclass
class Plan:
    """The tasks of a sweep or run, what is done, and the estimate."""

    tasks: list                        # madlab.sweep.Task
    states: dict[str, str]             # task id -> done | failed | pending
    rates: dict[str, float] = field(default_factory=dict)   # backend -> seconds per work unit
    basis: str = ""                    # what the rates were measured from
    probe_seconds: float = 0.0
    started: dict[str, int] = field(default_factory=dict)  # task id -> generations checkpointed on disk

    @property
    def configurations(self) -> list[str]:
        return list(dict.fromkeys(t.run for t in self.tasks))

    def todo(self) -> list:
        return [t for t in self.tasks if self.states.get(t.id) != "done"]

    def left(self, task) -> int:
        """Generations of `task` still to run (a done task: 0; checkpointed ones are not counted)."""
        if self.states.get(task.id) == "done":
            return 0
        return task.config["gens"] - self.started.get(task.id, 0)

    def seed_generations(self, tasks=None) -> int:
        """Seed-generations still to run of `tasks` (default: every task)."""
        return sum(t.config["seeds"] * self.left(t) for t in (self.tasks if tasks is None else tasks))

    def seconds(self, task) -> float | None:
        """Estimated seconds of what is left of one task (None without a rate for its backend)."""
        rate = self.rates.get(task.config["backend"])
        left = self.left(task)
        if rate is None or not left:
            return None if rate is None else 0.0
        gens = task.config["gens"]
        return rate * work(task.config, gens, gens - left + 1) * task.config["seeds"] * left

    def total_seconds(self) -> float | None:
        times = [self.seconds(t) for t in self.todo()]
        return None if any(s is None for s in times) else sum(times)

    def line(self, jobs: int | None = None) -> str:
        """The one-line plan printed when a sweep or run starts."""
        n, runs, done = len(self.tasks), len(self.configurations), len(self.tasks) - len(self.todo())
        chunks = n / max(runs, 1)
        shape = (f"{runs} configuration{'s' * (runs != 1)} x {chunks:g} seed chunk{'s' * (chunks != 1)}"
                 if chunks == int(chunks) else f"{runs} configurations in seed chunks")
        resumed = sum(1 for t in self.todo() if self.started.get(t.id))
        text = (f"plan: {n} task{'s' * (n != 1)} ({shape}"
                + (f"; {done} already done" if done else "")
                + (f"; {resumed} resume{'s' * (resumed == 1)} from {'its' if resumed == 1 else 'their'} "
                   f"checkpoint{'s' * (resumed != 1)}" if resumed else "") + f"), "
                f"{self.seed_generations(self.todo()):,} seed-generations to run")
        return text + "; " + self.estimate_text(jobs)

    def estimate_text(self, jobs: int | None = None) -> str:
        total = self.total_seconds()
        if not self.todo():
            return "nothing left to run"
        if total is None:
            return f"no cost estimate ({self.basis or 'nothing measured yet'})"
        parallel = max(1, min(jobs or 1, len(self.todo())))
        wall = (f"{duration(makespan([self.seconds(t) for t in self.todo()], parallel))} with --jobs {parallel}"
                if jobs and jobs > 1 else duration(total))
        return f"estimated {wall} (an estimate from {self.basis})"


def makespan(seconds: list[float], workers: int) -> float:
    """Wall seconds of tasks taking `seconds` each, handed out in order to the first free of
    `workers` workers (as the local pool does): a task cannot be split, so a few large tasks on
    many workers take longer than their total / workers."""
    free = [0.0] * max(1, workers)
    for s in seconds:
        i = min(range(len(free)), key=free.__getitem__)
        free[i] += s
    return max(free)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 5400:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def measured_rates(out: Path, tasks) -> tuple[dict[str, float], str]:
    """Seconds per work unit per backend from the finished tasks of `tasks` in `out`."""
    import pandas as pd

    seconds: dict[str, float] = {}
    units: dict[str, float] = {}
    used = 0
    for task in tasks:
        path = store.task_paths(out, task.id)["done"]
        if not path.exists():
            continue
        try:
            frame = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - an unreadable file is no measurement
            continue
        timing = [c for c in ("time_train_s", "time_synth_s", "time_eval_s") if c in frame.columns]
        if not timing:
            continue
        spent = float(frame.drop_duplicates("generation")[timing].to_numpy().sum())
        backend = task.config["backend"]
        seconds[backend] = seconds.get(backend, 0.0) + spent
        units[backend] = units.get(backend, 0.0) + work(task.config) * task.config["seeds"] * task.config["gens"]
        used += 1
    rates = {b: seconds[b] / units[b] for b in seconds if units[b] > 0}
    return rates, (f"the timing of {used} finished task{'s' * (used != 1)} in {out}" if rates else "")


def probe_size(task) -> int:
    """Seed-generations a probe of `task` runs."""
    return min(task.config["seeds"], PROBE_SEEDS) * min(task.config["gens"], PROBE_GENERATIONS)


def heaviest(tasks) -> dict:
    """Per backend, the pending task with the most work per seed-generation."""
    out: dict[str, Any] = {}
    for task in tasks:
        backend = task.config["backend"]
        if backend not in out or work(task.config) > work(out[backend].config):
            out[backend] = task
    return out


def probe_rates(tasks, threads: int) -> tuple[dict[str, float], str, float]:
    """Seconds per work unit per backend from the first PROBE_GENERATIONS generations of each
    backend's heaviest task among `tasks` with its own seed chunk (at most PROBE_SEEDS seeds), run
    in this process; the last generation alone is timed (module docstring)."""
    import torch

    from madlab.config import RunConfig
    from madlab.runner import run_config

    rates, labels, spent = {}, [], 0.0
    previous = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        for backend, task in heaviest(tasks).items():
            seeds = min(task.config["seeds"], PROBE_SEEDS)
            gens = min(task.config["gens"], PROBE_GENERATIONS)
            config = {**task.config, "seeds": seeds, "gens": gens}
            cfg = RunConfig.from_flat(config).validate()
            start = time.perf_counter()
            marks = [start]                        # when each generation ended
            try:
                run_config(cfg, progress=lambda done, total: marks.append(time.perf_counter()))
            except Exception as err:  # noqa: BLE001 - a failing probe leaves no estimate, not a crash
                labels.append(f"{backend}: the probe failed ({type(err).__name__})")
                continue
            spent += time.perf_counter() - start
            seconds = marks[-1] - marks[-2]        # the last generation alone
            rates[backend] = seconds / (work(config, gens, gens) * seeds)
            where = " ".join(f"{k}={v}" for k, v in task.point.items())
            labels.append(f"{backend}{' ' + where if where else ''}: {seconds:.2f} s for generation "
                          f"{gens} of {seeds} seed{'s' * (seeds != 1)}")
    finally:
        torch.set_num_threads(previous)
    basis = "a probe here (" + "; ".join(labels) + "), scaled by each configuration's sizes"
    return rates, basis, spent


def make_plan(out: Path, tasks, *, threads: int = 1, probe: bool = True) -> Plan:
    """The plan of `tasks` in directory `out` (which may not exist yet): states, and rates from
    the finished tasks there, else (with `probe`) from a probe."""
    from madlab.sweep import states

    out = Path(out)
    state = states(out, tasks) if out.exists() else {t.id: "pending" for t in tasks}
    plan = Plan(tasks=tasks, states=state)
    plan.rates, plan.basis = measured_rates(out, tasks) if out.exists() else ({}, "")
    todo = plan.todo()
    if out.exists():
        plan.started = {t.id: n for t in todo if (n := store.checkpointed_generations(out, t.id))}
    missing = [t for t in todo if t.config["backend"] not in plan.rates]
    probe_cost = sum(probe_size(t) for t in heaviest(missing).values())
    if missing and probe and probe_cost <= PROBE_SHARE * plan.seed_generations(missing):
        rates, basis, plan.probe_seconds = probe_rates(missing, threads)
        plan.rates.update(rates)
        plan.basis = "; ".join(b for b in (plan.basis, basis) if b)
    elif missing and not plan.basis:
        plan.basis = ("too little work to be worth a probe" if probe else
                      "nothing measured yet: no finished task here, and this executor runs no probe")
    return plan


# ----------------------------------------------------------------------------- from measured calls
# The GPU check's estimate of figure5-paper (benchmarks/gpu_check, part b): what `Plan` answers
# from one rate per unit of `work`, answered from one run's measured backend calls instead (base
# training, the auxiliary sample and fine-tune, guided and unguided sampling, each metric), each
# scaled by its own size: on a GPU those costs do not keep their CPU proportions.
def _fit_line(points: dict[float, float]):
    """(a, b) of a + b x through the first and last of {x: y} (one point: through the origin)."""
    xs, ys = list(points), list(points.values())
    if len(xs) < 2 or xs[-1] == xs[0]:
        return 0.0, ys[0] / xs[0]
    b = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    return ys[0] - b * xs[0], b


def extrapolate_figure5(kw: dict, seeds: int, calls: dict, probes: dict) -> dict:
    """figure5-paper's wall time on this device, from the main run's measured calls.

    Per generation of a configuration (|D_s|, w), as the Loop runs it: base training on
    |D^t| rows (loops.kinds; augment: n_real + |D_s|, n_real in generation 1), the auxiliary sample (n_aux points,
    unguided) and its fine-tune (n_aux rows), D_s (|D_s| points, guided unless w = 0; none in the
    last generation), the evaluation sample (n_eval points, guided unless w = 0) and the metric.
    Measured directly, the same in every configuration of the preset: the auxiliary sample, the
    fine-tune, the metric (W2 by the auction, or fd). Scaled from the measured base training:
    by the per-epoch cost's growth with |D| measured by two probes (else in proportion to |D|).
    Guided sampling: linear in the points through the two measured sizes (|D_s| and n_eval);
    unguided sampling: the guided line times the measured ratio at n_aux (about 1/2: one network
    instead of two). Seeds: the preset's 1000 per configuration against the measured run's (its
    tasks of 250 seeds are assumed as fast per seed as 1000: on a GPU run them with seed_chunk
    1000)."""
    from madlab import presets
    from madlab import backends
    spec = presets.load("figure5-paper")
    points = spec.configs()
    n_real, n_s, n_aux, n_eval = kw["n_real"], kw["n_synth"], kw["n_aux"], kw["n_eval"]
    epochs = kw["epochs"]

    def call(label):
        return calls.get(label)

    base_n = n_real + n_s
    base = call(f"train n={base_n} epochs={epochs:g}")
    finetune = call(f"train n={n_aux} epochs={kw['aux_epochs']:g}") or 0.0
    aux_sample = call(f"sample n={n_aux}") or 0.0
    guided = {float(n): call(f"sample n={n} guided") for n in sorted({n_s, n_eval})}
    guided = {n: v for n, v in guided.items() if v is not None}
    w2_s, fd_s = call("metric w2") or 0.0, call("metric fd") or 0.0
    by_n = {float(k): v for k, v in sorted((probes.get("train_s_per_epoch_by_n") or {}).items(),
                                           key=lambda kv: float(kv[0]))}
    if base is None:
        raise ValueError(f"no base training call at |D| = {base_n} in the main run: {sorted(calls)}")
    if len(by_n) >= 2:
        a_tr, b_tr = _fit_line(by_n)
        train_model = "per-epoch cost linear in |D|, slope from two probes, anchored at the base call"
    else:
        a_tr, b_tr = 0.0, 1.0
        train_model = "in proportion to |D|, anchored at the base call (no probes)"
    a_s, b_s = _fit_line(guided)
    unguided_ratio = aux_sample / max(a_s + b_s * n_aux, 1e-12)

    def train_base(n):
        return base * max(a_tr + b_tr * n, 0.0) / max(a_tr + b_tr * base_n, 1e-12)

    def sample(n, guide):
        g = max(a_s + b_s * n, 0.0)
        return g if guide else g * unguided_ratio

    total = {"w2": 0.0, "fd": 0.0}
    configs = []
    for point, cfg in points:
        o = cfg.flat()
        scale = cfg.seeds / seeds
        ds, G = o["n_synth"], o["gens"]
        fixed = (aux_sample + finetune) if backends.uses_aux(o) else 0.0
        guide = backends.guided(o) == 2

        def generation(t: int, hands_on: bool) -> float:   # its seconds, the metric apart
            size = training_set_size(o["loop"], t, o["n_real"], ds)
            return (train_base(size) + fixed + sample(o["n_eval"], guide)
                    + (sample(ds, guide) if hands_on else 0.0))   # D_s: none in the last generation

        steady = generation(2, True)
        configs.append({"n_synth": ds, "omega": o["omega"], "s_per_gen_steady_fd": (steady + fd_s) * scale})
        run = sum(generation(t, t < G) for t in range(1, G + 1))
        for metric, m in (("w2", w2_s), ("fd", fd_s)):
            total[metric] += (run + G * m) * scale
    seed_gens = sum(c.seeds * c.loop.gens for _, c in points)
    headline = (f"figure5-paper extrapolated ({len(points)} configurations, {seed_gens:,} "
                f"seed-generations): {total['w2'] / 3600:.2f} h with exact W2 (auction), "
                f"{total['fd'] / 3600:.2f} h with fd (target: <= 1 h with exact W2)")
    return {"hours_w2": total["w2"] / 3600, "hours_fd": total["fd"] / 3600,
            "seed_gen_per_s_w2": seed_gens / total["w2"] if total["w2"] else None,
            "configurations": len(points), "seed_generations": seed_gens,
            "measured_s_per_gen": {"base_train": base, "finetune": finetune,
                                   "aux_sample_unguided": aux_sample, "guided_sample": guided,
                                   "metric_w2": w2_s, "metric_fd": fd_s},
            "train_model": train_model, "train_probe_fit_s_per_epoch": [a_tr, b_tr],
            "guided_sample_fit_s": [a_s, b_s], "unguided_over_guided_at_n_aux": unguided_ratio,
            "per_configuration": configs, "headline": headline,
            "assumptions": " ".join(extrapolate_figure5.__doc__.split("\n\n", 1)[1].split())}
