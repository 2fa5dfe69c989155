"""toy.standardize: the toy-diffusion notebook's data standardisation around a toy backend.

Properties: the scalars are the notebook's (one mean and one population std over every
coordinate), the wrapper is exactly the inner backend run on standardised data with samples
mapped back, which makes the learner equivariant to x -> c x + b; the SIMS auxiliary model stays
in its base's coordinates; omega = 0 is the base model; and the option changes no earlier run id.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from loops import Loop, SeedStreams, make_algorithm
from madlab.config import RunConfig
from madlab.runner import build_backend
from toy.reference import ReferenceDDPM, learner
from toy.standardize import LOC, SCALE, Standardized, split, standardization
from toy.targets import paper_gaussian

SEEDS = [3, 4]


def small_backend() -> ReferenceDDPM:
    return ReferenceDDPM(learner("toy-diffusion", T=8, width=16, depth=2))


def data(n: int = 60) -> torch.Tensor:
    return paper_gaussian().sample(n, SeedStreams(SEEDS).keys("real"))


def test_the_scalars_are_one_mean_and_one_population_std_over_every_coordinate():
    x = data()
    loc, scale = standardization(x)
    for k in range(len(SEEDS)):
        flat = x[k].numpy().ravel()
        assert loc[k].item() == pytest.approx(flat.mean(), rel=1e-5)
        assert scale[k].item() == pytest.approx(flat.std(), rel=1e-5)   # numpy: ddof 0, the notebook's
    assert loc.shape == scale.shape == (len(SEEDS), 1, 1)


def test_the_wrapper_is_the_inner_backend_on_standardised_data_with_samples_mapped_back():
    inner, x, streams = small_backend(), data(), SeedStreams(SEEDS)
    wrapped = Standardized(inner)
    start = inner.init(streams.keys("init"))
    model = wrapped.train(start, x, 3, streams.keys("train"))
    loc, scale = standardization(x)
    plain = inner.train(start, (x - loc) / scale, 3, streams.keys("train"))
    weights, stats = split(model)
    assert set(weights) == set(plain) and all(torch.equal(weights[k], plain[k]) for k in plain)
    assert torch.equal(stats[0], loc) and torch.equal(stats[1], scale)
    mapped = wrapped.sample(model, 50, streams.keys("eval"))
    raw = inner.sample(plain, 50, streams.keys("eval"))
    torch.testing.assert_close(mapped, raw * scale + loc)


def test_a_standardised_learner_is_equivariant_to_a_scalar_scale_and_shift():
    """Trained on c x + b (b added to every coordinate), it samples c x~ + b for the x~ it samples
    when trained on x: the notebook's recipe makes the far field independent of the data's units."""
    wrapped, x, streams = Standardized(small_backend()), data(), SeedStreams(SEEDS)
    c, b = 7.5, -3.0
    start = wrapped.init(streams.keys("init"))
    a = wrapped.sample(wrapped.train(start, x, 3, streams.keys("train")), 40, streams.keys("eval"))
    moved = wrapped.sample(wrapped.train(start, c * x + b, 3, streams.keys("train")), 40, streams.keys("eval"))
    torch.testing.assert_close(moved, c * a + b, rtol=1e-4, atol=1e-3)
    # without the wrapper the same learner is not equivariant (its far field is in data units)
    inner = small_backend()
    a = inner.sample(inner.train(start, x, 3, streams.keys("train")), 40, streams.keys("eval"))
    moved = inner.sample(inner.train(start, c * x + b, 3, streams.keys("train")), 40, streams.keys("eval"))
    assert (moved - (c * a + b)).abs().max() > 0.1


def test_the_auxiliary_model_keeps_its_base_coordinates_and_eq6_keeps_the_scalars():
    wrapped, x, streams = Standardized(small_backend()), data(), SeedStreams(SEEDS)
    base = wrapped.train(wrapped.init(streams.keys("init")), x, 3, streams.keys("train"))
    synthetic = 5.0 * wrapped.sample(base, 40, streams.keys("aux-sample")) + 2.0   # other scalars
    aux = wrapped.finetune(base, synthetic, 2, streams.keys("finetune"))
    assert torch.equal(aux[LOC], base[LOC]) and torch.equal(aux[SCALE], base[SCALE])
    mixed = wrapped.combine([base, aux], [4.0, -3.0])
    torch.testing.assert_close(mixed[LOC], base[LOC])
    torch.testing.assert_close(mixed[SCALE], base[SCALE])


def test_sims_at_omega_0_is_the_base_model_bit_for_bit_through_the_wrapper():
    target, streams = paper_gaussian(), SeedStreams(SEEDS)
    runs = {}
    for algo, omega in (("standard", 0.0), ("sims", 0.0)):
        loop = Loop(kind="augment", algorithm=make_algorithm(algo, epochs=2, omega=omega, n_aux=30, aux_epochs=1),
                    backend=Standardized(small_backend()), target=target, n_real=40, n_synth=20,
                    generations=2, n_eval=30)
        seen = []

        def evaluate(samples, generation):
            seen.append(samples.clone())
            return {"mean": samples.mean((1, 2))}

        list(loop.run(streams, evaluate))
        runs[algo] = seen
    for a, b in zip(runs["standard"], runs["sims"]):
        assert torch.equal(a, b)


def test_the_option_builds_the_wrapper_and_keeps_earlier_run_ids():
    base = dict(learner="toy-diffusion", algo="standard", omega=0.0, seeds=2, gens=2)
    plain = RunConfig.from_flat(**base).validate()
    on = RunConfig.from_flat(**base, standardize=True).validate()
    assert not isinstance(build_backend(plain, (2,)), Standardized)
    assert isinstance(build_backend(on, (2,)), Standardized)
    assert on.run_id() != plain.run_id()
    # a run recorded before the option existed (docs/calibration.md cites it) keeps its id
    recal = dict(loop="augment", algo="sims", gens=40, seeds=32, n_real=1000, n_aux=2000, epochs=100,
                 aux_epochs=50, target="gaussian2d", learner="resmlp-silu", metric=["w2", "fd"],
                 n_synth=500, omega=4.0)
    assert RunConfig.from_flat(**recal).validate().run_id() == "e96016ab90b9"
    assert "standardize" in plain.identity() and plain.identity()["standardize"] is False
