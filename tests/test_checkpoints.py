"""Per-generation checkpoints: a loop, a task, a run or a sweep stopped after any generation resumes
there and ends bit-identical to one that never stopped, recomputing at most the generation it was in."""
import io

import pandas as pd
import pytest
import torch

from loops import Loop, LoopState, SeedStreams, make_algorithm
from madlab import store
from madlab.config import RunConfig
from madlab.runner import run_config
from madlab.sweep import SweepSpec, chunk_tasks, compute_task, open_sweep
from toy.ddpm import ToyDDPM
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian

TIMES = ["time_train_s", "time_synth_s", "time_eval_s"]
GAUSS = dict(backend="gaussian", gens=6, seeds=3, n_real=30, n_synth=12, n_eval=40, metric=["w2", "fd"])
DDPM = dict(backend="toy-ddpm", gens=4, seeds=2, epochs=2, aux_epochs=1, n_real=40, n_synth=16,
            n_aux=30, n_eval=40, T=8, width=16, depth=1, batch_size=32, metric=["w2", "fd"])


def roundtrip(state: LoopState) -> LoopState:
    """The state as a checkpoint file gives it back."""
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    return torch.load(blob, weights_only=False)


def metrics(records) -> list[tuple[int, dict]]:
    return [(r.generation, {k: v.clone() for k, v in r.metrics.items()}) for r in records]


def evaluate(samples, t):
    return {"mean": samples.mean((1, 2)), "spread": samples.std((1, 2))}


def assert_same(a, b):
    assert [g for g, _ in a] == [g for g, _ in b]
    for (_, x), (_, y) in zip(a, b):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.mark.parametrize("kind", ["fully-synthetic", "augment", "fresh", "accumulate"])
@pytest.mark.parametrize("algo, warm", [("standard", False), ("sims", True), ("sims-param", False)])
def test_a_loop_resumed_after_any_generation_continues_exactly(kind, algo, warm):
    def loop():
        return Loop(kind, make_algorithm(algo, epochs=1, warm_start=warm, omega=0.5, n_aux=20),
                    GaussianFit(), paper_gaussian(), n_real=20, n_synth=10, generations=5, n_eval=15)

    streams = SeedStreams([3, 4])
    whole = list(loop().run(streams, evaluate))
    for t in range(1, 6):
        state = roundtrip(whole[t - 1].state)
        assert state.generation == t
        kept = 0 if t == 5 else (t if kind == "accumulate" else 1)
        assert len(state.synthetic) == kept                       # only what D^{t+1} is made of
        assert (state.carried is not None) == (warm and t < 5)    # G^t only for warm starts
        resumed = list(loop().run(SeedStreams([3, 4]), evaluate, resume=state))
        assert_same(metrics(resumed), metrics(whole[t:]))


def test_a_warm_started_toy_ddpm_resumes_exactly(tiny_ddpm):
    def loop():
        return Loop("augment", make_algorithm("sims", epochs=2, warm_start=True, n_aux=16, aux_epochs=1),
                    ToyDDPM(tiny_ddpm), paper_gaussian(), n_real=32, n_synth=8, generations=3, n_eval=12)

    whole = list(loop().run(SeedStreams([0, 1]), evaluate))
    resumed = list(loop().run(SeedStreams([0, 1]), evaluate, resume=roundtrip(whole[0].state)))
    assert_same(metrics(resumed), metrics(whole[1:]))
    with pytest.raises(ValueError, match="cannot resume after generation 7"):
        next(loop().run(SeedStreams([0, 1]), evaluate, resume=LoopState(7, [])))


class Stop(Exception):
    pass


def stop_after(generation: int, seeds: int):
    def progress(done, total):
        if done // seeds == generation:
            raise Stop
    return progress


def one_task(tmp_path, options):
    cfg = RunConfig.from_flat(options).validate()
    task = chunk_tasks(cfg)[0]
    open_sweep(tmp_path, SweepSpec(name="c", base=cfg.flat()), [task])
    return cfg, task


def canonical(frame):
    return frame.drop(columns=TIMES).reset_index(drop=True)


@pytest.mark.parametrize("options", [GAUSS, {**GAUSS, "loop": "accumulate", "warm_start": True}, DDPM,
                                     {**DDPM, "warm_start": True, "algo": "sims-param"}],
                         ids=["gaussian", "gaussian-accumulate-warm", "toy-ddpm", "toy-ddpm-warm"])
def test_a_task_stopped_after_each_generation_resumes_with_the_uninterrupted_rows(tmp_path, options):
    cfg, task = one_task(tmp_path, options)
    whole = run_config(cfg)
    gens, seeds = cfg.loop.gens, cfg.seeds
    for stop in range(1, gens):
        folder = tmp_path / f"stop{stop}"
        open_sweep(folder, SweepSpec(name="c", base=cfg.flat()), [task])
        with pytest.raises(Stop):
            run_config(cfg, stop_after(stop, seeds), store.TaskCheckpoint(folder, task.id))
        checkpoint = store.TaskCheckpoint(folder, task.id)
        assert checkpoint.generations() == stop                   # committed before progress heard of it
        assert sorted(p.name for p in checkpoint.folder.glob("*.pt")) == [f"g{stop:04d}.pt"]
        heard = []
        resumed = run_config(cfg, lambda done, total: heard.append(done // seeds), checkpoint)
        assert heard == list(range(stop + 1, gens + 1))           # only the generations left
        pd.testing.assert_frame_equal(canonical(resumed), canonical(whole), check_exact=True)


def test_a_torn_or_corrupt_checkpoint_falls_back_to_the_last_generation_that_reads(tmp_path):
    cfg, task = one_task(tmp_path, {**GAUSS, "keep_checkpoints": True})
    whole = run_config(cfg)
    checkpoint = store.TaskCheckpoint(tmp_path, task.id, keep=True)
    with pytest.raises(Stop):
        run_config(cfg, stop_after(4, cfg.seeds), checkpoint)
    assert checkpoint.generations() == 4
    checkpoint.path(4, "pt").write_bytes(checkpoint.path(4, "pt").read_bytes()[:50])   # torn state
    checkpoint.path(3, "parquet").write_bytes(b"PAR1 not really")                     # corrupt rows
    checkpoint.path(5, "parquet").write_bytes(b"rows of a generation that never committed")
    heard = []
    resumed = run_config(cfg, lambda done, total: heard.append(done // cfg.seeds), checkpoint)
    assert heard == [3, 4, 5, 6]                                  # from generation 2's state
    pd.testing.assert_frame_equal(canonical(resumed), canonical(whole), check_exact=True)


def test_a_finished_task_removes_its_checkpoint_unless_kept(tmp_path):
    from madlab.executors import LocalExecutor
    from madlab.sweep import run_sweep

    for keep in (False, True):
        out = tmp_path / str(keep)
        s = SweepSpec(name="k", base={**GAUSS, "keep_checkpoints": keep}, grid={"omega": [0.0, 1.0]})
        tasks = open_sweep(out, s, s.tasks())
        run_sweep(out, tasks, LocalExecutor(jobs=1))
        for task in tasks:
            checkpoint = store.TaskCheckpoint(out, task.id)
            assert checkpoint.folder.exists() == keep
            if keep:   # every generation's rows, and the last state (nothing left to need it)
                names = sorted(p.name for p in checkpoint.folder.iterdir())
                assert names == [f"g{t:04d}.{e}" for t in range(1, 7) for e in ("parquet", "pt")]


def test_an_edm_task_resumes_exactly(tmp_path, monkeypatch):
    """The image backend: its ensembles (denoisers and EMA copies) travel through the checkpoint
    for warm starts, and its synthetic images for the next generation."""
    pytest.importorskip("sklearn")
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    options = dict(backend="edm", dataset="digits", loop="augment", gens=3, seeds=2, n_real=32,
                   n_synth=8, n_aux=8, epochs=1, aux_epochs=1, n_eval=24, edm_steps=2, edm_batch=16,
                   edm_ema_kimg=0.05, omega=0.8, warm_start=True)
    cfg, task = one_task(tmp_path / "a", options)
    whole = run_config(cfg)
    checkpoint = store.TaskCheckpoint(tmp_path / "a", task.id)
    with pytest.raises(Stop):
        run_config(cfg, stop_after(1, cfg.seeds), checkpoint)
    resumed = run_config(cfg, None, checkpoint)
    pd.testing.assert_frame_equal(canonical(resumed), canonical(whole), check_exact=True)


def test_status_and_report_show_the_finished_generations_of_an_unfinished_task(tmp_path, capsys):
    from madlab.cli import main
    from madlab.executors import LocalExecutor
    from madlab.sweep import record, run_sweep

    s = SweepSpec(name="p", base={**GAUSS, "gens": 8}, grid={"omega": [0.0, 1.0]})
    tasks = open_sweep(tmp_path, s, s.tasks())
    run_sweep(tmp_path, tasks[:1], LocalExecutor(jobs=1))         # one task done and merged
    with pytest.raises(Stop):                                      # the other stopped after generation 5
        run_config(tasks[1].run_config(), stop_after(5, 3), store.TaskCheckpoint(tmp_path, tasks[1].id))
    with pytest.raises(SystemExit):
        main(["status", str(tmp_path)])
    out = " ".join(capsys.readouterr().out.split())
    assert "2 tasks — 1 done, 0 failed, 1 pending" in out
    assert "generations: 13 of 16 finished (5 of them checkpointed by 1 unfinished task" in out
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--boot", "20", "--out", str(tmp_path / "report")])
    assert exit_.value.code == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "reading the rows on disk: 1 finished task and 5 finished generations of 1 unfinished task" in err
    # the unfinished configuration is left out, so its 5 generations do not set the window for both
    assert "left out 1 unfinished configuration (omega=1.0): reporting the 1 finished ones" in err
    table = pd.read_csv(tmp_path / "report" / "configurations.csv")
    assert sorted(table["last_generation"]) == [8] and list(table["omega"]) == [0.0]
    # finishing the task later gives the same rows as never stopping
    frame, _ = compute_task(tasks[1], out=tmp_path)
    record(tmp_path, tasks[1], frame, None)
    assert not store.TaskCheckpoint(tmp_path, tasks[1].id).folder.exists()
    pd.testing.assert_frame_equal(canonical(frame), canonical(run_config(tasks[1].run_config())), check_exact=True)


def test_a_configuration_of_several_seed_chunks_with_only_checkpoints_is_left_out(tmp_path, capsys):
    """A seed chunk's own run id names its seeds; its checkpoint rows must carry the task's
    (the configuration's) run id, as its finished file does, or the report cannot tell that the
    configuration is unfinished and lets its few generations into the analysis."""
    from madlab.cli import main
    from madlab.executors import LocalExecutor
    from madlab.sweep import run_sweep

    s = SweepSpec(name="p", base={**GAUSS, "gens": 8, "seeds": 4}, grid={"omega": [0.0, 1.0]}, seed_chunk=2)
    tasks = open_sweep(tmp_path, s, s.tasks())
    done = [t for t in tasks if t.point["omega"] == 0.0]
    assert len(done) == 2 and done[0].run_config().run_id() != done[0].run   # chunked: ids differ
    run_sweep(tmp_path, done, LocalExecutor(jobs=1))
    stopped = next(t for t in tasks if t.point["omega"] == 1.0)
    with pytest.raises(Stop):
        run_config(stopped.run_config(), stop_after(5, 2), store.TaskCheckpoint(tmp_path, stopped.id))
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--boot", "20", "--out", str(tmp_path / "report")])
    assert exit_.value.code == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "left out 1 unfinished configuration (omega=1.0): reporting the 1 finished ones" in err
    table = pd.read_csv(tmp_path / "report" / "configurations.csv")
    assert list(table["omega"]) == [0.0] and list(table["last_generation"]) == [8]
    assert list(table["seeds"]) == [4]
    # a finished task file that no longer verifies (torn) is named, left out, never merged
    torn = store.task_paths(tmp_path, done[0].id)["done"]
    torn.write_bytes(torn.read_bytes()[:300])
    (tmp_path / "results.parquet").unlink(missing_ok=True)
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--boot", "20", "--out", str(tmp_path / "report2")])
    err = " ".join(capsys.readouterr().err.split())
    assert f"left out 1 task file that does not verify ({torn.name}: torn or not this sweep's" in err


def test_a_report_before_any_configuration_finishes_reads_every_unfinished_one(tmp_path, capsys):
    from madlab.cli import main

    s = SweepSpec(name="p", base={**GAUSS, "gens": 8}, grid={"omega": [0.0, 1.0]})
    tasks = open_sweep(tmp_path, s, s.tasks())
    for task, stop in zip(tasks, (6, 5)):
        with pytest.raises(Stop):
            run_config(task.run_config(), stop_after(stop, 3), store.TaskCheckpoint(tmp_path, task.id))
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(tmp_path), "--boot", "20", "--out", str(tmp_path / "report")])
    assert exit_.value.code == 0
    assert "no configuration has finished yet: reporting the 2 unfinished ones" \
        in " ".join(capsys.readouterr().err.split())
    table = pd.read_csv(tmp_path / "report" / "configurations.csv")
    assert sorted(table["last_generation"]) == [5, 6]


def test_a_resumed_plan_counts_and_estimates_only_the_generations_left(tmp_path):
    from madlab.plan import make_plan, work

    s = SweepSpec(name="p", base={**GAUSS, "gens": 8}, grid={"omega": [0.0, 1.0]})
    tasks = open_sweep(tmp_path, s, s.tasks())
    fresh = make_plan(tmp_path, tasks, probe=False)
    fresh.rates = {"gaussian": 1.0}
    with pytest.raises(Stop):
        run_config(tasks[1].run_config(), stop_after(5, 3), store.TaskCheckpoint(tmp_path, tasks[1].id))
    plan = make_plan(tmp_path, tasks, probe=False)
    plan.rates = {"gaussian": 1.0}
    seeds = tasks[1].config["seeds"]
    assert plan.started == {tasks[1].id: 5}
    assert plan.seed_generations(plan.todo()) == fresh.seed_generations(fresh.todo()) - 5 * seeds
    assert plan.seconds(tasks[1]) == pytest.approx(work(tasks[1].config, 8, 6) * seeds * 3)
    assert plan.seconds(tasks[0]) == pytest.approx(fresh.seconds(tasks[0]))
    assert "1 resumes from its checkpoint" in plan.line()
