"""The toy DDPM's training step and sampler step through `torch.compile` (kernels="compile").

Opt-in (`MADLAB_KERNELS=compile`, or DDPMConfig.kernels = "compile"); the default path is not
touched. The functions here are the same network as `ResMLP.eps` (toy/network.py) and the same
hand-written backward as `FastResMLP._backward` (toy/fastpath.py), written out of place so that
inductor can fuse each layer's bias, time input, activation (and LayerNorm) and residual add into
the loops around the matrix products (C++ on the CPU, Triton on CUDA). Adam stays outside: torch's fused kernel, one pass.

The numbers equal the torch-op path's up to float rounding (inductor reorders and contracts
arithmetic), so a compiled run is statistically, not bitwise, the same run: tests/test_compiled.py.

Compile time: one compilation per function and network structure and per shape; after a second
shape of the same function torch marks the dimensions dynamic, so a run compiles a handful of
graphs, once per process. Inductor's FX-graph cache (on by default in torch >= 2.4, under
$TORCHINDUCTOR_CACHE_DIR or /tmp/torchinductor_$USER) keeps the generated code across processes.
"""
from __future__ import annotations

import functools
import warnings

import torch
import torch._dynamo

from toy.guidance import sims_eps

_STATE: dict[str, object] = {}


def available() -> bool:
    """Whether torch.compile works here (inductor needs a C++ compiler on the CPU); tried once on
    a tiny function per process."""
    if "ok" not in _STATE:
        try:
            f = torch.compile(lambda a: (a * 2).sin().sum(), fullgraph=True)
            f(torch.ones(3))
            _STATE["ok"] = True
        except Exception as err:  # noqa: BLE001 (any failure of the compiler stack)
            _STATE["ok"], _STATE["error"] = False, f"{type(err).__name__}: {err}".splitlines()[0]
    return bool(_STATE["ok"])


def error() -> str:
    return str(_STATE.get("error", ""))


def _act(name: str, y: torch.Tensor) -> torch.Tensor:
    return {"relu": torch.relu, "silu": torch.nn.functional.silu,
            "gelu": torch.nn.functional.gelu, "tanh": torch.tanh}[name](y)


def _act_grad(name: str, grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return torch.where(out > 0, grad, torch.zeros_like(grad))
    if name == "tanh":
        return grad * (1 - out * out)
    if name == "silu":
        return torch.ops.aten.silu_backward(grad, y)
    return torch.ops.aten.gelu_backward(grad, y)


def _mm(a: torch.Tensor, b: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """a @ b (batched) with its operands rounded to `dt` and the result in float32: the one place
    where precision='bf16' acts (bf16 products, float32 accumulation inside the product, everything
    else -- biases, activations, LayerNorm, the residual stream, Adam -- in float32). A no-op cast
    for float32, where the products are exactly the torch-op path's."""
    if dt == torch.float32:
        return torch.bmm(a, b)
    return torch.bmm(a.to(dt), b.to(dt)).to(torch.float32)


def _affine(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """bias + a @ b, the product through `_mm`."""
    if dt == torch.float32:
        return torch.baddbmm(bias, a, b)
    return _mm(a, b, dt) + bias


def _layer_norm(u: torch.Tensor):
    u = u - u.mean(-1, keepdim=True)
    rstd = ((u * u).mean(-1, keepdim=True) + 1e-5).rsqrt()
    return u * rstd, rstd


def _layer_norm_grad(dy, n, rstd, g):
    dn = dy * g
    return (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True)) * rstd


def _forward(depth: int, layer_norm: bool, act: str, dt: torch.dtype, p: dict, x: torch.Tensor,
             emb: torch.Tensor, keep: bool):
    """FastResMLP._forward out of place: x [S, B, d], emb [S, B, e] or [S, 1, e]; matrix
    products in `dt` (`_mm`)."""
    h = _affine(p["in.b"], x, p["in.wx"], dt) + _mm(emb, p["in.we"], dt)
    saved = []
    for i in range(depth):
        y1 = _affine(p[f"b{i}.b1"], h, p[f"b{i}.w1x"], dt) + _mm(emb, p[f"b{i}.w1e"], dt)
        n1 = rstd1 = n2 = rstd2 = None
        if layer_norm:
            n1, rstd1 = _layer_norm(y1)
            y1 = n1 * p[f"b{i}.g1"] + p[f"b{i}.h1"]
        r1 = _act(act, y1)
        y2 = _affine(p[f"b{i}.b2"], r1, p[f"b{i}.w2"], dt)
        if layer_norm:
            n2, rstd2 = _layer_norm(y2)
            y2 = n2 * p[f"b{i}.g2"] + p[f"b{i}.h2"]
        r2 = _act(act, y2)
        if keep:
            saved.append((h, n1, rstd1, y1, r1, n2, rstd2, y2, r2))
        h = h + r2
    return _affine(p["out.b"], h, p["out.w"], dt), (saved, h)


def _grads(depth: int, layer_norm: bool, act: str, dt: torch.dtype, keys: tuple[str, ...],
           p: dict, x: torch.Tensor, emb: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """d loss / d p for loss = sum over seeds of mean ||eps - eps_theta||^2 / d (the training
    loss of toy.training.train), in the order of `keys` (FastResMLP._layout's pieces); every
    matrix product, forward and backward, in `dt` (`_mm`)."""
    pred, (blocks, h) = _forward(depth, layer_norm, act, dt, p, x, emb, keep=True)
    dout = (pred - eps) * (2.0 / (eps.shape[1] * eps.shape[2]))
    tr = lambda a: a.transpose(1, 2)  # noqa: E731
    sum1 = lambda a: a.sum(1, keepdim=True)  # noqa: E731
    mm = lambda a, b: _mm(a, b, dt)  # noqa: E731
    g = {"out.w": mm(tr(h), dout), "out.b": sum1(dout)}
    dh = mm(dout, tr(p["out.w"]))
    for i in reversed(range(depth)):
        h, n1, rstd1, y1, r1, n2, rstd2, y2, r2 = blocks[i]
        du = _act_grad(act, dh, y2, r2)
        if layer_norm:
            g[f"b{i}.g2"], g[f"b{i}.h2"] = sum1(du * n2), sum1(du)
            du = _layer_norm_grad(du, n2, rstd2, p[f"b{i}.g2"])
        g[f"b{i}.w2"], g[f"b{i}.b2"] = mm(tr(r1), du), sum1(du)
        du = _act_grad(act, mm(du, tr(p[f"b{i}.w2"])), y1, r1)
        if layer_norm:
            g[f"b{i}.g1"], g[f"b{i}.h1"] = sum1(du * n1), sum1(du)
            du = _layer_norm_grad(du, n1, rstd1, p[f"b{i}.g1"])
        g[f"b{i}.w1x"], g[f"b{i}.w1e"] = mm(tr(h), du), mm(tr(emb), du)
        g[f"b{i}.b1"] = sum1(du)
        dh = dh + mm(du, tr(p[f"b{i}.w1x"]))
    g["in.wx"], g["in.we"], g["in.b"] = mm(tr(x), dh), mm(tr(emb), dh), sum1(dh)
    return tuple(g[k] for k in keys)


def _sample_step(depth: int, layer_norm: bool, act: str, dt: torch.dtype, S: int, guided: bool,
                 p: dict,
                 x: torch.Tensor, emb: torch.Tensor, omega: torch.Tensor, c_eps: torch.Tensor,
                 c_x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step (Ho et al. Algorithm 2, line 4) for a block of S seeds' points x
    [S, P, d]: x_{t-1} = c_x (x - c_eps eps) + noise, eps SIMS-guided (Eq. 5, noise space) when
    `guided` (p then stacks the S models, then their S guides)."""
    xx = torch.cat([x, x]) if guided else x
    out, _ = _forward(depth, layer_norm, act, dt, p, xx, emb, keep=False)
    eps = sims_eps(out[:S], out[S:], omega) if guided else out
    return (x - c_eps * eps) * c_x + noise


# Dynamo keeps its compiled graphs per code object: every learner, shape family and grad mode of
# `_grads` (and of `_sample_step`) shares one list, 8 long by default; a run with several learners
# (`python -m benchmarks learners --compile`, the tests) needs more.
for _name in ("recompile_limit", "cache_size_limit"):
    if hasattr(torch._dynamo.config, _name):
        setattr(torch._dynamo.config, _name, max(64, getattr(torch._dynamo.config, _name)))


@functools.lru_cache(maxsize=None)
def train_grads(depth: int, layer_norm: bool, act: str, keys: tuple[str, ...],
                dt: torch.dtype = torch.float32):
    """The compiled `_grads` for one network structure and product precision: f(p, x, emb, eps)
    -> grads, always run without autograd (the backward is written out; one grad mode, one graph)."""
    fn = torch.compile(functools.partial(_grads, depth, layer_norm, act, dt, keys), fullgraph=True)

    def grads(*args):
        with torch.no_grad():
            return fn(*args)
    return grads


@functools.lru_cache(maxsize=None)
def sample_step(depth: int, layer_norm: bool, act: str, dt: torch.dtype = torch.float32):
    """The compiled `_sample_step` for one network structure and product precision:
    f(S, guided, p, x, emb, omega, c_eps, c_x, noise) -> x_{t-1}."""
    fn = torch.compile(functools.partial(_sample_step, depth, layer_norm, act, dt), fullgraph=True)

    def step(*args):
        with torch.no_grad():
            return fn(*args)
    return step


def check(device: torch.device) -> None:
    """Raise a one-line error where kernels='compile' cannot work here."""
    if not available():
        raise RuntimeError(f"kernels='compile' needs a working torch.compile (inductor; a C++ "
                           f"compiler on the CPU): {error()}")
    if device.type not in ("cpu", "cuda"):
        warnings.warn(f"kernels='compile' is untested on {device.type}", RuntimeWarning, stacklevel=2)
