"""precision='bf16' (issue 26): the network's matrix products in bfloat16 with float32
accumulation, everything else float32, on the compiled fast path (toy/compiled.py) and under
torch.autocast on the autograd reference (toy-diffusion). Off by default; it changes the numbers,
so it is part of the run id, while fp32 keeps every earlier id.

bf16 keeps 8 significant bits: an operand's relative rounding is at most 2^-9 ~ 2e-3, so a product
or gradient moves by ~1e-3 relative. The tests bound that from both sides: above (the wiring is
right) and below (bf16 really acts; a path that silently stayed fp32 would agree to ~1e-6)."""
from __future__ import annotations

import pytest
import torch

from loops.rng import SeedStreams
from madlab.config import ConfigError, RunConfig
from toy import compiled
from toy.ddpm import DDPMConfig, ToyDDPM
from toy.reference import ReferenceDDPM, reference_config

needs_compile = pytest.mark.skipif(not compiled.available(),
                                   reason="torch.compile does not work here (no C++ compiler?)")


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_bf16_product_rounds_operands_and_accumulates_in_float32():
    """`_mm` with bf16 = the float32 product of the bf16-rounded operands, up to the output's own
    bf16 rounding (2^-8 relative per element), and far from the unrounded product's agreement."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 500, 64, generator=g), torch.randn(3, 64, 64, generator=g)
    got = compiled._mm(a, b, torch.bfloat16)
    assert got.dtype == torch.float32
    rounded = torch.bmm(a.bfloat16().float(), b.bfloat16().float())
    assert ((got - rounded).abs() <= 2 ** -8 * rounded.abs() + 1e-6).all()
    assert 1e-4 < _relative(got, torch.bmm(a, b)) < 1e-2
    assert torch.equal(compiled._mm(a, b, torch.float32), torch.bmm(a, b))


@needs_compile
def test_bf16_gradients_near_autograd():
    """The compiled bf16 step's gradients against float32 autograd through `eps`: within bf16's
    precision, not equal to it."""
    backend = ToyDDPM(DDPMConfig(precision="bf16"))
    assert backend.compiled and backend.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(7)
    params = backend.init(SeedStreams(range(3)).keys("init"))
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in params.items()}
    x, eps = torch.randn(3, 200, 2, generator=g), torch.randn(3, 200, 2, generator=g)
    t = torch.randint(1, backend.config.T + 1, (3, 200), generator=g)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    loss = ((backend.eps(leaves, x, t) - eps) ** 2).mean((1, 2)).sum()
    ref = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    _, p = backend._pack(params, 0, 3)
    layout = backend._layout()
    c = backend.config
    fn = compiled.train_grads(c.depth, c.layer_norm, c.activation, tuple(k for k, *_ in layout),
                              torch.bfloat16)
    got = dict(zip((k for k, *_ in layout), fn(p, x, backend.embed_grid[t], eps)))
    errors = {key: _relative(got[key], ref[name][:, rows]) for key, name, rows, _ in layout
              if ref[name][:, rows].norm() > 0}
    assert max(errors.values()) < 3e-2, errors
    assert max(errors.values()) > 1e-4, errors   # bf16 acted


def test_reference_bf16_runs_the_network_under_autocast():
    """toy-diffusion with bf16: float32 out, close to fp32, not equal; gradients flow to every
    parameter through autocast's bf16 products."""
    fp32 = ReferenceDDPM(reference_config(DDPMConfig(learner="toy-diffusion")))
    bf16 = ReferenceDDPM(reference_config(DDPMConfig(learner="toy-diffusion", precision="bf16")))
    g = torch.Generator().manual_seed(3)
    params = fp32.init(SeedStreams(range(2)).keys("init"))
    x = torch.randn(2, 300, 2, generator=g)
    t = torch.randint(0, fp32.config.T + 1, (2, 300), generator=g)
    want = fp32.eps(params, x, t)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    got = bf16.eps(leaves, x, t)
    assert got.dtype == torch.float32
    assert 1e-4 < _relative(got.detach(), want) < 3e-2
    got.square().sum().backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in leaves.values())


def test_precision_is_in_the_run_id_only_when_bf16():
    base = dict(seeds=2, gens=2)
    plain = RunConfig.from_flat(**base).validate()
    assert RunConfig.from_flat(**base, precision="fp32").validate().run_id() == plain.run_id()
    assert RunConfig.from_flat(**base, precision="bf16").validate().run_id() != plain.run_id()
    # a run recorded before the option existed (docs/calibration.md cites it) keeps its id
    recal = dict(loop="augment", algo="sims", gens=40, seeds=32, n_real=1000, n_aux=2000, epochs=100,
                 aux_epochs=50, target="gaussian2d", learner="resmlp-silu", metric=["w2", "fd"],
                 n_synth=500, omega=4.0)
    assert RunConfig.from_flat(**recal).validate().run_id() == "e96016ab90b9"


@pytest.mark.parametrize("kernels", ["fused", "torch"])
def test_bf16_with_hand_written_kernels_is_one_clear_error(kernels):
    with pytest.raises(ConfigError, match="precision bf16 runs on the compiled step") as err:
        DDPMConfig(precision="bf16", kernels=kernels).validate()
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="precision"):
        DDPMConfig(precision="fp16").validate()
