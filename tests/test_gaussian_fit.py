"""Gaussian-fit backend: the classic MAD analytics (Alemohammad et al. 2023) hold in the loop."""
import math

import torch

from loops import Loop, SeedStreams, make_algorithm
from toy.gaussian_fit import GaussianFit
from toy.targets import paper_gaussian

SIGMA_TRACE = 4.0  # tr [[2, 1], [1, 2]]


def fitted_traces(kind, *, n_real, n_synth, gens, seeds=4000, estimator="mle", bias=1.0):
    """tr(Sigma_t) / tr(Sigma) of the fitted Gaussian per seed, [gens, seeds]."""
    loop = Loop(kind, make_algorithm("standard"), GaussianFit(estimator, bias), paper_gaussian(),
                n_real=n_real, n_synth=n_synth, generations=gens, n_eval=2)
    traces = []
    for rec in loop.run(SeedStreams(range(seeds)), lambda s, t: {}, keep_models=True):
        _, sigma = rec.model.model
        traces.append(torch.diagonal(sigma, dim1=1, dim2=2).sum(-1) / SIGMA_TRACE)
    return torch.stack(traces)


def within_monte_carlo_error(values: torch.Tensor, expected: float, z: float = 4.0) -> bool:
    se = values.std() / math.sqrt(len(values))
    return abs(values.mean().item() - expected) < z * se.item()


def test_fully_synthetic_covariance_collapses_at_the_mle_rate():
    """E[Sigma_t] = ((n_r - 1)/n_r) ((n_s - 1)/n_s)^(t - 1) Sigma for the ML estimator."""
    n, gens = 10, 15
    traces = fitted_traces("fully-synthetic", n_real=n, n_synth=n, gens=gens, seeds=3000)
    for t in (1, 5, 10, 15):
        expected = ((n - 1) / n) ** t
        assert within_monte_carlo_error(traces[t - 1], expected), (t, traces[t - 1].mean(), expected)
    assert traces[-1].mean() < 0.3  # (0.9)^15 = 0.21: collapse


def test_unbiased_estimator_keeps_the_expected_covariance():
    """With the n - 1 estimator E[Sigma_t] = Sigma for every t (a martingale) ..."""
    traces = fitted_traces("fully-synthetic", n_real=10, n_synth=10, gens=10, estimator="unbiased",
                            seeds=3000)
    assert within_monte_carlo_error(traces[-1], 1.0)
    # ... yet the typical run still collapses: the median shrinks generation after generation.
    assert traces[-1].median() < traces[0].median() < 1.0


def test_sampling_bias_shrinks_the_covariance_by_lambda_per_generation():
    n, lam, gens = 50, 0.8, 6
    traces = fitted_traces("fully-synthetic", n_real=n, n_synth=n, gens=gens, bias=lam, seeds=2000)
    for t in (1, 3, 6):
        expected = ((n - 1) / n) ** t * lam ** (t - 1)
        assert within_monte_carlo_error(traces[t - 1], expected), (t, traces[t - 1].mean(), expected)


def test_augment_loop_stays_bounded():
    """With the real set kept in every generation the covariance settles instead of collapsing."""
    n, gens = 20, 40
    augment = fitted_traces("augment", n_real=n, n_synth=n, gens=gens, seeds=1000)
    fully = fitted_traces("fully-synthetic", n_real=n, n_synth=n, gens=gens, seeds=1000)
    assert fully[-1].mean() < 0.2                      # (19/20)^40 = 0.13
    assert augment[-1].mean() > 0.8
    # settled: the last 10 generations agree with generation 20 within Monte-Carlo error
    assert within_monte_carlo_error(augment[-10:].mean(0), augment[19].mean().item(), z=5)


def test_gaussian_guidance_is_the_tempered_product():
    """SIMS on Gaussians: the guided model is N ∝ p_b^(1+w) / p_a^w; w = 0 is the base."""
    base = (torch.zeros(1, 2, dtype=torch.float64), 2 * torch.eye(2, dtype=torch.float64)[None])
    aux = (torch.zeros(1, 2, dtype=torch.float64), 1.5 * torch.eye(2, dtype=torch.float64)[None])
    mu, S = GaussianFit.guided(base, aux, 1.0)
    # precision 2 * (1/2) - 1 * (1/1.5) = 1/3 -> variance 3: guidance pushes away from the narrower aux
    assert torch.allclose(S, 3 * torch.eye(2, dtype=torch.float64)[None])
    mu0, S0 = GaussianFit.guided(base, aux, 0.0)
    assert torch.allclose(S0, base[1]) and torch.allclose(mu0, base[0])
