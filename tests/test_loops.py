"""Loop kinds: what each generation trains on (DESIGN.md section 2)."""
import pytest
import torch

from loops import Loop, SeedStreams, make_algorithm
from loops.config import LOOP_KINDS
from loops.kinds import training_set, training_set_size
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian


class Recording(GaussianFit):
    """The Gaussian fit, remembering every training set and every sample it handed out."""

    def __init__(self):
        super().__init__()
        self.trained_on, self.handed_out = [], []

    def train(self, model, data, epochs, generators):
        self.trained_on.append(data.clone())
        return super().train(model, data, epochs, generators)

    def sample(self, model, n, generators, **kw):
        out = super().sample(model, n, generators, **kw)
        self.handed_out.append(out.clone())
        return out


N_REAL, N_SYNTH, N_EVAL, GENS = 40, 15, 7, 5


def run(kind):
    backend = Recording()
    loop = Loop(kind, make_algorithm("standard"), backend, paper_gaussian(), n_real=N_REAL,
                n_synth=N_SYNTH, generations=GENS, n_eval=N_EVAL)
    records = list(loop.run(SeedStreams([0, 1]), lambda s, t: {}))
    # per generation the loop samples D_s^t (n_synth) then the evaluation set (n_eval)
    synthetic = [s for s in backend.handed_out if s.shape[1] == N_SYNTH]
    return backend.trained_on, synthetic, records


def test_augment_reuses_the_same_real_set():
    data, synthetic, records = run("augment")
    real = data[0]
    for t in range(2, GENS + 1):
        assert data[t - 1].shape[1] == N_REAL + N_SYNTH
        assert torch.equal(data[t - 1][:, :N_REAL], real)
        assert torch.equal(data[t - 1][:, N_REAL:], synthetic[t - 2])
    assert [r.train_size for r in records] == [N_REAL] + [N_REAL + N_SYNTH] * (GENS - 1)


def test_fresh_draws_new_real_data_every_generation():
    data, synthetic, _ = run("fresh")
    reals = [d[:, :N_REAL] for d in data]
    for t in range(1, GENS):
        assert not torch.equal(reals[t], reals[t - 1])
        assert torch.equal(data[t][:, N_REAL:], synthetic[t - 1])
    # same seeds, same first real set as the augment loop: only later draws are new
    assert torch.equal(reals[0], run("augment")[0][0])


def test_accumulate_grows_by_n_synth_each_generation():
    data, synthetic, records = run("accumulate")
    assert [r.train_size for r in records] == [N_REAL + k * N_SYNTH for k in range(GENS)]
    for t in range(2, GENS + 1):
        assert torch.equal(data[t - 1][:, :-N_SYNTH], data[t - 2])   # everything before is kept
        assert torch.equal(data[t - 1][:, -N_SYNTH:], synthetic[t - 2])


def test_fully_synthetic_trains_on_the_previous_synthetic_set_only():
    data, synthetic, records = run("fully-synthetic")
    assert [r.train_size for r in records] == [N_REAL] + [N_SYNTH] * (GENS - 1)
    for t in range(2, GENS + 1):
        assert torch.equal(data[t - 1], synthetic[t - 2])


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_training_set_size_is_the_size_the_loop_trains_on(kind):
    """|D^t| as madlab.plan counts it is the size of the set every generation trains on."""
    _, _, records = run(kind)
    assert [r.train_size for r in records] == [training_set_size(kind, t, N_REAL, N_SYNTH)
                                               for t in range(1, GENS + 1)]


def test_unknown_kind_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="unknown loop kind"):
        Loop("sideways", make_algorithm("standard"), GaussianFit(), paper_gaussian(), 10, 10, 2, 10)
    with pytest.raises(ValueError, match="must be positive"):
        Loop("augment", make_algorithm("standard"), GaussianFit(), paper_gaussian(), 10, 0, 2, 10)
    with pytest.raises(ValueError, match="unknown algo 'magic'"):
        make_algorithm("magic")
    with pytest.raises(ValueError, match="unknown loop kind"):
        training_set("sideways", 2, torch.zeros(1, 2, 2), [torch.zeros(1, 2, 2)])
    with pytest.raises(ValueError, match="unknown loop kind"):
        training_set_size("sideways", 2, 10, 10)
