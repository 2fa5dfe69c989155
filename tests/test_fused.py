"""The fused CPU row kernels (toy/fused_mlp.c) compute what the torch-op path computes, and a
machine without a C compiler falls back to torch ops with a warning."""
from __future__ import annotations

import pytest
import torch

from loops.rng import SeedStreams
from toy import fused
from toy.ddpm import DDPMConfig, ToyDDPM

needs_kernels = pytest.mark.skipif(fused.kernels("auto") is None,
                                   reason="no C compiler: the fused kernels cannot be built")

LN = dict(learner="resmlp-ln")
SIN = dict(learner="resmlp-sin")   # the fused relu learner without LayerNorm (the default is SiLU: torch ops)
CASES = {  # config, data dimension, rows per seed, time input per row (training) or per seed
    "default-train": (SIN, 2, 50, True),                 # resmlp-sin: no LayerNorm, sinusoidal t
    "default-sample": (SIN, 2, 37, False),
    "no-ln-scaled-width16-depth3": (dict(SIN, time_embedding="scaled", width=16, depth=3), 2, 29, True),
    "no-ln-raw-width100-dim3": (dict(SIN, time_embedding="raw", width=100, depth=1), 3, 17, False),
    "resmlp-ln-train": (LN, 2, 50, True),
    "resmlp-ln-sample": (LN, 2, 37, False),
    "ln-sinusoidal-width16-depth3": (dict(LN, time_embedding="sinusoidal", width=16, depth=3), 2, 29, True),
    "ln-raw-width100-dim3": (dict(LN, time_embedding="raw", width=100, depth=1), 3, 17, False),
    "dim5-torch-output-layer": (SIN, 5, 21, True),  # more outputs than fused.MAX_OUT
}


def _case(name, seeds=3):
    overrides, dim, rows, per_row = CASES[name]
    backend = ToyDDPM(DDPMConfig(kernels="fused", **overrides), dim=dim)
    g = torch.Generator().manual_seed(5)
    params = backend.init(SeedStreams(range(seeds)).keys("init"))
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in params.items()}
    _, p = backend._pack(params, 0, seeds)
    x = torch.randn(seeds, rows, dim, generator=g)
    t = torch.randint(1, backend.config.T + 1, (seeds, rows if per_row else 1), generator=g)
    return backend, p, x, backend.embed(t), torch.randn(seeds, rows, dim, generator=g)


@needs_kernels
@pytest.mark.parametrize("name", CASES)
def test_fused_forward_and_gradients_equal_torch_ops(name):
    backend, p, x, emb, dout = _case(name)
    ref, saved = backend._forward(p, x, emb, keep=True)
    ws = {}
    out, saved_f = backend._forward_fused(p, x, emb, True, ws)
    # float32 rounding grows with the values: without LayerNorm these perturbed nets reach |eps|
    # ~ 150, where one rounding step is ~1e-5 (torch ops and the kernels are equally far from
    # float64), so the tolerance is relative to the largest value
    tol = 1e-5 * max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(out, ref, atol=tol, rtol=1e-5)
    out_nokeep, _ = backend._forward_fused(p, x, emb, False, {})
    torch.testing.assert_close(out_nokeep, ref, atol=tol, rtol=1e-5)
    if emb.shape[1] != x.shape[1]:
        return  # the backward pass only runs in training, with one time per row
    n = sum(v.numel() for v in p.values())
    g_ref, g_fused = torch.full((n,), float("nan")), torch.full((n,), float("nan"))
    views_ref = backend._views(g_ref, x.shape[0])
    views_fused = backend._views(g_fused, x.shape[0])
    backend._backward(p, views_ref, x, emb, saved, dout.clone())
    backend._backward_fused(p, views_fused, x, emb, saved_f, dout.clone(), ws)
    assert not torch.isnan(g_fused).any()  # every gradient element written
    for key in views_ref:
        tol = 1e-5 * max(1.0, float(views_ref[key].abs().max()))
        torch.testing.assert_close(views_fused[key], views_ref[key], atol=tol, rtol=1e-4, msg=key)


@needs_kernels
def test_fused_kernels_propagate_nan_like_torch():
    """A diverged model must still show up as NaN downstream (ReLU(NaN) = NaN, as in torch)."""
    backend, p, x, emb, _ = _case("default-train")
    x[1, 3, 0] = float("nan")
    out, _ = backend._forward_fused(p, x, emb, False, {})
    assert torch.isnan(out[1, 3]).all() and not torch.isnan(out[0]).any()


@needs_kernels
@pytest.mark.parametrize("learner", ["resmlp-sin", "resmlp-ln"])
def test_training_and_sampling_agree_with_torch_ops(learner):
    streams = SeedStreams([3, 4])
    data = torch.randn(2, 90, 2, generator=torch.Generator().manual_seed(1))
    a, b = (ToyDDPM(DDPMConfig(batch_size=32, kernels=k, learner=learner))
            for k in ("torch", "fused"))
    assert b.fused and not a.fused
    model = a.init(streams.keys("init"))
    ta, tb = (m.train(model, data, 3, streams.keys("train")) for m in (a, b))
    diff = torch.cat([(ta[k] - tb[k]).abs().flatten() for k in ta])
    # Adam's eps-scale sensitivity (see tests/test_vectorized._same_training)
    assert diff.max() <= a.config.lr and (diff > 1e-5).float().mean() < 1e-2
    xa, xb = (m.sample(ta, 40, streams.keys("eval"), guide=model, omega=2.5) for m in (a, b))
    torch.testing.assert_close(xb, xa, atol=1e-4, rtol=1e-4)


def test_unfusable_configs_use_torch_ops_and_bad_requests_are_refused(monkeypatch):
    assert not ToyDDPM(DDPMConfig(activation="silu", learner="resmlp-sin")).fused
    assert not ToyDDPM(DDPMConfig()).fused                    # the default learner, resmlp-silu
    assert (ToyDDPM(DDPMConfig(layer_norm=False, **SIN)).fused
            == ToyDDPM(DDPMConfig(layer_norm=True, **SIN)).fused)
    with pytest.raises(ValueError, match="needs the CPU and the relu"):
        ToyDDPM(DDPMConfig(activation="gelu", kernels="fused"))
    with pytest.raises(ValueError, match="unknown kernels"):
        DDPMConfig(kernels="cuda").validate()
    monkeypatch.setenv("MADLAB_KERNELS", "fast")
    with pytest.raises(ValueError, match="MADLAB_KERNELS must be one of"):
        ToyDDPM(DDPMConfig(**SIN))
    monkeypatch.setenv("MADLAB_KERNELS", "torch")
    assert not ToyDDPM(DDPMConfig(**SIN)).fused


def test_without_a_compiler_torch_ops_take_over(monkeypatch, tmp_path):
    monkeypatch.setattr(fused, "_LIB", {})
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="fused CPU kernels unavailable"):
        backend = ToyDDPM(DDPMConfig(**SIN))
    assert not backend.fused
    x = backend.sample(backend.init(SeedStreams([1]).keys("init")), 5,
                       SeedStreams([1]).keys("eval"))
    assert x.shape == (1, 5, 2) and torch.isfinite(x).all()
    with pytest.raises(RuntimeError, match="could not be built"):
        ToyDDPM(DDPMConfig(kernels="fused", **SIN))


@needs_kernels
def test_a_compiler_without_march_native_still_builds_the_kernels(monkeypatch, tmp_path):
    """Some compilers (older clang) reject -march=native: the portable flags are tried next."""
    cc = tmp_path / "cc-no-native"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-march=native" ] && exit 1; done\n'
                  'exec cc "$@"\n')
    cc.chmod(0o755)
    monkeypatch.setattr(fused, "_LIB", {})
    monkeypatch.setenv("MADLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(cc))
    backend, p, x, emb, _ = _case("default-train")
    assert backend.fused and backend.kernels.path.parent == tmp_path / "cache"
    out, _ = backend._forward_fused(p, x, emb, False, {})
    ref = backend._forward(p, x, emb, keep=False)[0]
    torch.testing.assert_close(out, ref, atol=1e-5 * float(ref.abs().max()), rtol=1e-5)
