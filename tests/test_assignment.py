"""The batched exact assignment (analysis/assignment.py) against POT, and per_seed's solver choice."""
import doctest
import math

import numpy as np
import ot
import pytest
import torch

import analysis.assignment
import analysis.distances
from analysis.assignment import auction, sq_euclidean
from analysis.distances import per_seed, wasserstein_batch
from madlab.config import ConfigError
from madlab.runner import check_environment

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def model_like(N, n, far=0.01, seed=0, dtype=torch.float64):
    """x: the paper's Gaussian with a share `far` of points at radius 100..1000 (a model's far
    tail); y: a clean sample of the Gaussian."""
    g = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64))
    x = torch.randn(N, n, 2, generator=g, dtype=torch.float64) @ L.T
    y = torch.randn(N, n, 2, generator=g, dtype=torch.float64) @ L.T
    k = round(far * n)
    if k:
        r = torch.exp(math.log(100) + math.log(10) * torch.rand(N, k, generator=g, dtype=torch.float64))
        a = 2 * math.pi * torch.rand(N, k, generator=g, dtype=torch.float64)
        x[:, :k] = torch.stack([r * a.cos(), r * a.sin()], -1)
    return x.to(dtype), y.to(dtype)


def pot_cost(x, y, p):
    """n * W_p^p by POT's network simplex, per seed, on the same float64 cost matrix (POT's own
    `ot.dist` expands |x|^2 + |y|^2 - 2 x.y: W1 of identical points comes out ~1e-7, not 0)."""
    out = []
    for M in sq_euclidean(x, y).numpy():
        M = np.sqrt(M) if p == 1 else M
        n = len(M)
        out.append(n * ot.emd2(np.full(n, 1 / n), np.full(n, 1 / n), M, numItermax=10**7))
    return torch.tensor(out, dtype=torch.float64)


def check(x, y, p=2, rtol=1e-6):
    C = sq_euclidean(x, y)
    C = C.sqrt() if p == 1 else C
    a = auction(C)
    ref = pot_cost(x, y, p)
    n = x.shape[1]
    assert torch.equal(a.col.sort(1).values, torch.arange(n).expand_as(a.col))  # permutations
    assert torch.allclose(a.cost, C.gather(2, a.col[..., None]).sum((1, 2)), rtol=1e-12)
    floor = n * 1e-12 * C.abs().amax((1, 2))              # eps's floor, for optimum 0
    assert (a.gap >= 0).all() and (a.gap <= torch.maximum(1e-9 * a.cost, floor)).all()
    assert (a.cost >= ref * (1 - 1e-12) - 1e-12).all()                        # never below optimal
    torch.testing.assert_close(a.cost, ref, rtol=rtol, atol=1e-12)
    return a


@pytest.mark.parametrize("n,far", [(100, 0.0), (300, 0.0), (100, 0.05), (300, 0.01)])
@pytest.mark.parametrize("p", [2, 1])
def test_agrees_with_pot_on_gaussian_and_far_tailed_samples(n, far, p):
    x, y = model_like(4, n, far, seed=n + int(100 * far))
    check(x, y, p)


@pytest.mark.slow
def test_agrees_with_pot_at_the_eval_size_1000():
    x, y = model_like(2, 1000, 0.01, seed=3)
    check(x, y, 2)


def test_far_points_on_both_sides_and_in_the_columns_only():
    x, _ = model_like(2, 150, 0.03, seed=31)
    y, _ = model_like(2, 150, 0.03, seed=32)
    check(x, y, 2)                        # far points among rows and columns
    clean, _ = model_like(2, 150, 0.0, seed=33)
    a = check(clean, x, 2)                # far columns only: solved transposed
    b = auction(sq_euclidean(x, clean))
    torch.testing.assert_close(a.cost, b.cost, rtol=1e-9, atol=0)
    assert torch.equal(a.col.argsort(1), b.col)   # the same permutation, inverted


def test_ties_duplicated_points_and_identical_sets():
    x, y = model_like(3, 120, 0.0, seed=7)
    x[0, 60:] = x[0, :60]                      # every point twice
    y[1] = x[1][torch.randperm(120, generator=torch.Generator().manual_seed(1))]  # a permutation
    x[2, :, 0] = torch.round(x[2, :, 0])       # many exact ties in the costs
    y[2, :, 0] = torch.round(y[2, :, 0])
    a = check(x, y, 2)
    assert a.cost[1] == 0
    check(x, y, 1)


def test_a_seed_gives_the_same_answer_alone_and_in_a_batch():
    x, y = model_like(5, 150, 0.02, seed=11)
    C = sq_euclidean(x, y)
    batch = auction(C)
    for k in (0, 3):
        alone = auction(C[k:k + 1])
        assert torch.equal(alone.cost, batch.cost[k:k + 1])
        assert torch.equal(alone.col, batch.col[k:k + 1])


def test_invariant_to_permuting_either_sample():
    x, y = model_like(3, 150, 0.02, seed=5)
    g = torch.Generator().manual_seed(2)
    px = x[:, torch.randperm(150, generator=g)]
    py = y[:, torch.randperm(150, generator=g)]
    w = wasserstein_batch(x, y)
    torch.testing.assert_close(wasserstein_batch(px, py), w, rtol=1e-9, atol=0)
    torch.testing.assert_close(wasserstein_batch(y, x), w, rtol=1e-9, atol=0)  # and symmetric


def test_wasserstein_batch_is_w2_and_w1_and_nan_for_a_diverged_seed():
    x, y = model_like(3, 100, 0.02, seed=9, dtype=torch.float32)
    x[1, 7, 0] = float("nan")
    y[2, 3, 1] = float("inf")
    for p in (1, 2):
        w = wasserstein_batch(x, y, p)
        assert w.device.type == "cpu" and w.dtype == torch.float64
        assert math.isnan(w[1]) and math.isnan(w[2])
        ref = analysis.distances.wasserstein(x[0], y[0], p)
        assert w[0].item() == pytest.approx(ref, rel=1e-6)


def test_small_and_degenerate_problems():
    one = torch.tensor([[[1.0, 2.0]]])
    assert wasserstein_batch(one, one + torch.tensor([3.0, 4.0])).tolist() == [5.0]
    same = torch.zeros(2, 5, 2)                       # every cost 0
    assert wasserstein_batch(same, same).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="square"):
        auction(torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="equal sample sizes"):
        wasserstein_batch(torch.zeros(1, 3, 2), torch.zeros(1, 4, 2))


def test_per_seed_solver_choice(monkeypatch):
    x, y = model_like(3, 80, 0.02, seed=4, dtype=torch.float32)
    monkeypatch.setenv("MADLAB_OT", "pot")
    pot = per_seed("w2", x, y)
    monkeypatch.setenv("MADLAB_OT", "auction")
    torch.testing.assert_close(per_seed("w2", x, y), pot, rtol=1e-6, atol=0)
    torch.testing.assert_close(per_seed("w1", x, y), per_seed("w1", x, y, n_jobs=2), rtol=1e-6, atol=0)
    # unequal sizes are no assignment: POT answers
    torch.testing.assert_close(per_seed("w2", x, y[:, :60]), torch.tensor(
        [analysis.distances.w2(a, b) for a, b in zip(x, y[:, :60])], dtype=torch.float64))
    monkeypatch.setenv("MADLAB_OT", "auto")                       # CPU samples: POT
    assert torch.equal(per_seed("w2", x, y), pot)


def test_a_bad_solver_name_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("MADLAB_OT", "hungarian")
    with pytest.raises(ValueError, match="MADLAB_OT must be one of auto, pot, auction"):
        per_seed("w2", torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ConfigError, match="MADLAB_OT"):
        check_environment()


def test_docstring_examples():
    for module in (analysis.assignment, analysis.distances):
        assert doctest.testmod(module).failed == 0


@pytest.mark.cuda
@cuda
def test_cuda_matches_the_cpu_and_stays_on_the_device(monkeypatch):
    x, y = model_like(8, 300, 0.01, seed=21, dtype=torch.float32)
    cpu = wasserstein_batch(x, y)
    gpu = wasserstein_batch(x.cuda(), y.cuda())
    assert gpu.device.type == "cpu"                       # only the [N] result comes back
    torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=0)
    torch.testing.assert_close(gpu, per_seed("w2", x, y), rtol=1e-6, atol=0)  # POT
    monkeypatch.setenv("MADLAB_OT", "auto")
    torch.testing.assert_close(per_seed("w2", x.cuda(), y), cpu, rtol=1e-9, atol=0)
    C = sq_euclidean(x.cuda(), y.cuda())
    a = auction(C)
    assert a.col.is_cuda and (a.gap <= 1e-9 * a.cost).all()


@pytest.mark.cuda
@cuda
def test_cuda_far_tails_and_a_diverged_seed():
    x, y = model_like(16, 1000, 0.01, seed=22)
    x[5, 0, 0] = float("nan")
    gpu = wasserstein_batch(x.cuda(), y.cuda())
    assert math.isnan(gpu[5])
    keep = [0, 1, 15]
    torch.testing.assert_close(gpu[keep] ** 2 * 1000, pot_cost(x[keep], y[keep], 2), rtol=1e-6, atol=0)
