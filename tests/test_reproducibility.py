"""Same command, same numbers; seed k's trajectory does not depend on the seeds beside it."""
import numpy as np
import pandas as pd

from madlab.config import RunConfig
from madlab.runner import run_config

TINY = dict(gens=3, n_real=64, n_synth=16, n_aux=64, n_eval=64, epochs=2, aux_epochs=1,
            T=10, width=16, depth=1, batch_size=32, metric=["w2", "fd"])


def values(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["seed", "generation", "metric"])["value"].sort_index()


def test_same_command_gives_identical_numbers():
    a = run_config(RunConfig(algo="sims", seeds=3, **TINY))
    b = run_config(RunConfig(algo="sims", seeds=3, **TINY))
    pd.testing.assert_series_equal(values(a), values(b), check_exact=True)


def test_seed_trajectory_is_the_same_alone_or_beside_63_others():
    together = values(run_config(RunConfig(algo="sims", seeds=64, **TINY)))
    for seed in (0, 37, 63):
        alone = values(run_config(RunConfig(algo="sims", seeds=1, first_seed=seed, **TINY)))
        np.testing.assert_allclose(alone.to_numpy(), together.loc[[seed]].to_numpy(), rtol=1e-4)


def test_chunking_seeds_does_not_change_numbers():
    whole = values(run_config(RunConfig(algo="standard", seeds=6, backend="gaussian", **TINY)))
    chunked = values(run_config(RunConfig(algo="standard", seeds=6, seed_chunk=4,
                                          backend="gaussian", **TINY)))
    np.testing.assert_allclose(whole.to_numpy(), chunked.to_numpy(), rtol=1e-12)


def test_different_seeds_give_different_numbers():
    a = values(run_config(RunConfig(algo="standard", seeds=2, **TINY)))
    b = values(run_config(RunConfig(algo="standard", seeds=2, first_seed=2, **TINY)))
    assert not np.allclose(a.to_numpy(), b.to_numpy())
