"""Same command, same numbers; seed k's trajectory does not depend on the seeds beside it."""
import numpy as np
import pandas as pd
import torch

from loops.rng import SeedStreams, rand, randn
from madlab.config import RunConfig
from madlab.runner import run_config

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
        np.testing.assert_allclose(alone.to_numpy(), together.loc[[seed]].to_numpy(), rtol=1e-4)


def test_chunking_seeds_does_not_change_numbers():
    whole = values(run_config(RunConfig.from_flat(algo="standard", seeds=6, backend="gaussian", **TINY)))
    chunked = values(run_config(RunConfig.from_flat(algo="standard", seeds=6, seed_chunk=4,
                                          backend="gaussian", **TINY)))
    np.testing.assert_allclose(whole.to_numpy(), chunked.to_numpy(), rtol=1e-12)


def test_different_seeds_give_different_numbers():
    a = values(run_config(RunConfig.from_flat(algo="standard", seeds=2, **TINY)))
    b = values(run_config(RunConfig.from_flat(algo="standard", seeds=2, first_seed=2, **TINY)))
    assert not np.allclose(a.to_numpy(), b.to_numpy())


def test_stream_rows_are_torchs_own_draws_from_each_generator():
    """Row k of randn/rand is exactly torch.randn/torch.rand(shape, generator=g_k): anyone can
    reproduce one seed's numbers with plain torch and that seed's generator."""
    streams = SeedStreams([5, 2, 9])
    for ours, theirs in ((randn, torch.randn), (rand, torch.rand)):
        for shape in ((7,), (2, 3, 4)):
            got = ours(streams.generators("train", 3, 1), shape)
            for row, g in zip(got, streams.generators("train", 3, 1)):
                assert torch.equal(row, theirs(shape, generator=g))


def test_threaded_draws_are_the_serial_draws():
    """With several torch threads the rows are drawn in parallel; the numbers do not change."""
    streams = SeedStreams(range(40))
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = randn(streams.generators("eval"), (3, 50)), rand(streams.generators("eval"), (9,))
        torch.set_num_threads(4)
        threaded = randn(streams.generators("eval"), (3, 50)), rand(streams.generators("eval"), (9,))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(serial[0], threaded[0]) and torch.equal(serial[1], threaded[1])
