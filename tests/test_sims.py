"""SIMS (Algorithm 1, Eq. 5 and 6): the guidance identities that must hold exactly."""
import torch

from loops import Loop, SeedStreams, make_algorithm
from toy.ddpm import ToyDDPM
from toy.targets import paper_gaussian


def run_samples(backend, algo, gens=2, seeds=(0, 1, 2)):
    """The evaluation samples and training sets of every generation of an augment loop."""
    seen = []

    def evaluate(samples, t):
        seen.append(samples.clone())
        return {"mean": samples.mean((1, 2))}

    loop = Loop("augment", algo, backend, paper_gaussian(), n_real=64, n_synth=32,
                generations=gens, n_eval=50)
    list(loop.run(SeedStreams(seeds), evaluate))
    return seen


def test_sims_with_omega_zero_is_exactly_standard_training(tiny_ddpm):
    backend = ToyDDPM(tiny_ddpm)
    standard = run_samples(backend, make_algorithm("standard", epochs=3))
    sims = run_samples(backend, make_algorithm("sims", epochs=3, omega=0.0, n_aux=64, aux_epochs=2))
    sims_param = run_samples(backend, make_algorithm("sims-param", epochs=3, omega=0.0, n_aux=64,
                                                     aux_epochs=2))
    for a, b, c in zip(standard, sims, sims_param):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


def test_sims_with_positive_omega_changes_the_samples(tiny_ddpm):
    backend = ToyDDPM(tiny_ddpm)
    standard = run_samples(backend, make_algorithm("standard", epochs=3), gens=1)
    sims = run_samples(backend, make_algorithm("sims", epochs=3, omega=2.0, n_aux=64, aux_epochs=2),
                       gens=1)
    assert not torch.allclose(standard[0], sims[0])


def trained_pair(tiny_ddpm):
    backend = ToyDDPM(tiny_ddpm)
    streams = SeedStreams([0, 1])
    data = paper_gaussian().sample(64, streams.keys("real"))
    return backend, streams, data


def test_omega_minus_one_samples_the_auxiliary_model(tiny_ddpm):
    backend, streams, data = trained_pair(tiny_ddpm)
    algo = make_algorithm("sims", epochs=3, omega=-1.0, n_aux=64, aux_epochs=2)
    trained = algo(backend, data, streams, 1)
    guided = trained.sample(100, streams.keys("eval", 1))
    aux_alone = backend.sample(trained.guide, 100, streams.keys("eval", 1))
    base_alone = backend.sample(trained.model, 100, streams.keys("eval", 1))
    assert torch.equal(guided, aux_alone)
    assert not torch.allclose(guided, base_alone)


def test_guidance_is_linear_in_the_score(tiny_ddpm):
    """A partner equal to the model leaves the score unchanged: (1+w) s - w s = s."""
    backend, streams, data = trained_pair(tiny_ddpm)
    model = backend.train(backend.init(streams.keys("init")), data, 3,
                          streams.keys("train"))
    plain = backend.sample(model, 100, streams.keys("eval"))
    self_guided = backend.sample(model, 100, streams.keys("eval"), guide=model, omega=3.0)
    assert torch.allclose(plain, self_guided, atol=1e-4)


def test_parameter_space_combination_is_the_weighted_sum(tiny_ddpm):
    backend, streams, _ = trained_pair(tiny_ddpm)
    a = backend.init(streams.keys("init", 1))
    b = backend.init(streams.keys("init", 2))
    mixed = backend.combine([a, b], [4.0, -3.0])  # (1 + w) theta_r - w theta_s with w = 3
    for name in a:
        assert torch.allclose(mixed[name], 4.0 * a[name] - 3.0 * b[name])
