"""Same command, same numbers; seed k's trajectory does not depend on the seeds beside it."""
import numpy as np
import pandas as pd
import torch

from loops.rng import SeedStreams
from madlab.config import RunConfig
from madlab.runner import run_config
from toy.targets import paper_gaussian

TINY = dict(gens=3, n_real=64, n_synth=16, n_aux=64, n_eval=64, epochs=2, aux_epochs=1,
            T=10, width=16, depth=1, batch_size=32, metric=["w2", "fd"])


def values(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["seed", "generation", "metric"])["value"].sort_index()


def test_same_command_gives_identical_numbers():
    a = run_config(RunConfig.from_flat(algo="sims", seeds=3, **TINY))
    b = run_config(RunConfig.from_flat(algo="sims", seeds=3, **TINY))
    pd.testing.assert_series_equal(values(a), values(b), check_exact=True)


def test_seed_trajectory_is_the_same_alone_or_beside_63_others():
    together = values(run_config(RunConfig.from_flat(algo="sims", seeds=64, **TINY)))
    for seed in (0, 37, 63):
        alone = values(run_config(RunConfig.from_flat(algo="sims", seeds=1, first_seed=seed, **TINY)))
        # bit for bit since the packed Adam buffer is padded (toy/ddpm.py _pack): was 1e-4 relative
        np.testing.assert_array_equal(alone.to_numpy(), together.loc[[seed]].to_numpy())


def test_chunking_seeds_does_not_change_numbers():
    whole = values(run_config(RunConfig.from_flat(algo="standard", seeds=6, backend="gaussian", **TINY)))
    chunked = values(run_config(RunConfig.from_flat(algo="standard", seeds=6, seed_chunk=4,
                                          backend="gaussian", **TINY)))
    np.testing.assert_allclose(whole.to_numpy(), chunked.to_numpy(), rtol=1e-12)


def test_a_shorter_run_is_a_prefix_of_a_longer_one():
    """Generations 1..2 of a 3-generation run are the 2-generation run, bit for bit, and a metric's
    rows do not depend on which other metrics were asked for (docs/figure5-sound-quick-report.md relies
    on it: the quick preset is a prefix of the 32-seed recalibration)."""
    longer = values(run_config(RunConfig.from_flat(algo="sims", seeds=2, **TINY)))
    shorter = values(run_config(RunConfig.from_flat(algo="sims", seeds=2, **{**TINY, "gens": 2,
                                                                           "metric": ["w2"]})))
    assert set(shorter.index.get_level_values("metric")) == {"w2", "w2_inlier", "outlier_share"}
    prefix = longer[longer.index.get_level_values("generation") <= 2].loc[shorter.index]
    np.testing.assert_array_equal(shorter.to_numpy(), prefix.to_numpy())


def test_different_seeds_give_different_numbers():
    a = values(run_config(RunConfig.from_flat(algo="standard", seeds=2, **TINY)))
    b = values(run_config(RunConfig.from_flat(algo="standard", seeds=2, first_seed=2, **TINY)))
    assert not np.allclose(a.to_numpy(), b.to_numpy())


def test_a_seeds_draws_are_the_same_alone_beside_others_and_in_pieces():
    """Row k of a draw for seeds [5, 2, 9] is bit for bit what seed k draws alone, and a draw cut
    at any offsets is the whole draw."""
    together = SeedStreams([5, 2, 9]).keys("train", 3, 1)
    for dtype in (torch.float32, torch.float64):
        for draw in ("randn", "rand"):
            whole = getattr(together, draw)((4, 7, 3), dtype=dtype)
            for k, seed in enumerate([5, 2, 9]):
                keys = SeedStreams([seed]).keys("train", 3, 1)
                alone = getattr(keys, draw)((4, 7, 3), dtype=dtype)
                assert torch.equal(alone[0], whole[k])
                assert torch.equal(getattr(together[k], draw)((4, 7, 3), dtype=dtype)[0], whole[k])
            flat = whole.flatten(1)
            pieces = [getattr(together, draw)((b - a,), offset=a, dtype=dtype)
                      for a, b in ((0, 5), (5, 6), (6, 43), (43, 84))]
            assert torch.equal(torch.cat(pieces, dim=1), flat)


def test_toy_ddpm_numbers_do_not_depend_on_how_draws_are_chunked(monkeypatch):
    """ToyDDPM draws RANDOM_CHUNK epochs (or sampler steps) per call, by offset: any chunk size
    gives the same trained model and the same samples, bit for bit."""
    from toy import ddpm
    streams = SeedStreams([4, 11])
    data = paper_gaussian().sample(40, streams.keys("real"))
    backend = ddpm.ToyDDPM(ddpm.DDPMConfig(T=10, width=16, depth=1, batch_size=16))
    results = []
    for chunk in (8, 3, 100):
        monkeypatch.setattr(ddpm, "RANDOM_CHUNK", chunk)
        model = backend.train(backend.init(streams.keys("init")), data, 7, streams.keys("train"))
        results.append((model, backend.sample(model, 13, streams.keys("eval"))))
    for model, x in results[1:]:
        assert all(torch.equal(model[k], results[0][0][k]) for k in model)
        assert torch.equal(x, results[0][1])


def test_threaded_draws_are_the_serial_draws():
    """With several torch threads the seeds are drawn in parallel; the numbers do not change."""
    keys = SeedStreams(range(40)).keys("eval")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = keys.randn((3, 50)), keys.rand((9,))
        torch.set_num_threads(4)
        threaded = keys.randn((3, 50)), keys.rand((9,))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(serial[0], threaded[0]) and torch.equal(serial[1], threaded[1])
