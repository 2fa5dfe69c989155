"""kernels='compile' (toy/compiled.py) computes what autograd and the torch-op path compute, up to
float rounding (inductor reorders arithmetic: not bit-equal), and is never the default."""
from __future__ import annotations

import pytest
import torch

from loops.rng import SeedStreams
from toy import compiled
from toy.ddpm import DDPMConfig, ToyDDPM

needs_compile = pytest.mark.skipif(not compiled.available(),
                                   reason="torch.compile does not work here (no C++ compiler?)")


def _setup(seeds=3, rows=50, learner="resmlp-silu"):
    backend = ToyDDPM(DDPMConfig(learner=learner, kernels="compile"))
    g = torch.Generator().manual_seed(7)
    params = backend.init(SeedStreams(range(seeds)).keys("init"))
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in params.items()}
    x = torch.randn(seeds, rows, 2, generator=g)
    t = torch.randint(1, backend.config.T + 1, (seeds, rows), generator=g)
    eps = torch.randn(seeds, rows, 2, generator=g)
    return backend, params, x, t, eps


def test_compile_is_opt_in(monkeypatch):
    monkeypatch.delenv("MADLAB_KERNELS", raising=False)
    assert not ToyDDPM(DDPMConfig()).compiled


@needs_compile
@pytest.mark.parametrize("learner", ["resmlp-silu", "resmlp-ln"])
def test_compiled_gradients_equal_autograd(learner):
    """The compiled step's gradients against autograd through the readable network `eps`."""
    backend, params, x, t, eps = _setup(learner=learner)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    pred = backend.eps(leaves, x, t)
    loss = ((pred - eps) ** 2).mean((1, 2)).sum()   # sum over seeds of each seed's mean loss
    ref = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    _, p = backend._pack(params, 0, x.shape[0])
    layout = backend._layout()
    c = backend.config
    fn = compiled.train_grads(c.depth, c.layer_norm, c.activation, tuple(k for k, *_ in layout))
    got = dict(zip((k for k, *_ in layout), fn(p, x, backend.embed_grid[t], eps)))
    for key, name, rows, _ in layout:
        want = ref[name][:, rows]
        tol = 1e-5 * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(got[key], want, atol=tol, rtol=1e-4, msg=key)


@needs_compile
def test_compiled_train_and_guided_sample_equal_torch_ops():
    """A short training call and a guided sampling chain on the default learner: the compiled
    path against the torch-op path with the same draws, to float tolerance."""
    backend, params, _, _, _ = _setup(seeds=2)
    torch_ops = ToyDDPM(DDPMConfig(kernels="torch"))
    streams = SeedStreams(range(2))
    data = torch.randn(2, 60, 2, generator=torch.Generator().manual_seed(3))
    a = torch_ops.train(params, data, 3, streams.keys("train"))
    b = backend.train(params, data, 3, streams.keys("train"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-4, rtol=1e-4, msg=k)
    for k in ("exp_avg", "exp_avg_sq"):
        for name in a.adam[k]:
            torch.testing.assert_close(b.adam[k][name], a.adam[k][name], atol=1e-5, rtol=1e-3)
    xa = torch_ops.sample(a, 30, streams.keys("eval"), guide=params, omega=3.0)
    xb = backend.sample(a, 30, streams.keys("eval"), guide=params, omega=3.0)
    assert torch.isfinite(xb).all()
    torch.testing.assert_close(xb, xa, atol=1e-4, rtol=1e-4)


def test_compile_unavailable_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(compiled._STATE, "ok", False)
    monkeypatch.setitem(compiled._STATE, "error", "no C++ compiler")
    with pytest.raises(RuntimeError, match="kernels='compile' needs a working torch.compile"):
        ToyDDPM(DDPMConfig(kernels="compile"))
