"""The toy DDPM backend, vectorized across seeds: N independent MLP denoisers as stacked tensors.

Every parameter has the seed as its leading dimension ([N, fan_in, fan_out] weights), the forward
pass is batched matrix products, one Adam updates the stack, and the loss is the sum over seeds of
each seed's mean loss. Adam is elementwise and seed k's loss depends only on seed k's parameters,
so the N models train exactly as N separate models would (up to float rounding).

Model eps_theta(x_t, t) predicts the noise (Ho et al. 2020, Eq. 14); sampling is DDPM ancestral
sampling (Algorithm 2). SIMS guidance mixes noise predictions, which equals mixing scores since
s = -eps / sqrt(1 - alpha_bar_t):  eps = (1 + w) eps_base - w eps_aux.

Speed (docs/performance.md): `eps` is the readable reference network; `train` and `sample` run the
same network through a hand-written forward/backward (no autograd, no concatenation of the time
input, LayerNorm by its closed-form gradient) and Adam on one flat parameter buffer, on blocks of
`seed_block` seeds (and `sample_rows` rows when sampling) so each step's working set stays in the
CPU cache. On the CPU, each block's bias, time input, LayerNorm (if any), ReLU and residual add run as one
fused C pass per row (toy/fused.py; torch ops where no C compiler is found). Blocks and kernels
only reorder independent work: no number changes beyond float rounding.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from loops.rng import StreamKeys
from toy import compiled, fused
from toy.config import REFERENCE_LEARNERS, DDPMConfig  # `from toy.ddpm import DDPMConfig` works
from toy.params import AdamState, TrainedParams, adam_state
from toy.schedules import alpha_bar, betas_from_alpha_bar

Params = dict[str, torch.Tensor]

ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "tanh": torch.tanh}  # toy.config.ACTIVATION_NAMES
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)  # torch >= 2.0 (CPU kernel since 2.4)
PACK_ALIGN = 64           # a packed parameter buffer's length is a multiple of this (see _pack)
FUSED_BLOCK_ROWS = 10000  # rows (seeds x batch) per training block on the fused CPU path (benchmarks.blocks)
RANDOM_CHUNK = 8  # epochs (training) or steps (sampling) drawn per call (memory only: draws are by offset)


def _argsort_rows(keys: torch.Tensor) -> torch.Tensor:
    """argsort along the last dimension: numpy's on the CPU (5x faster than torch's here; the
    keys are continuous draws, so both give the same permutation but for exact ties)."""
    if keys.device.type == "cpu":
        return torch.from_numpy(np.argsort(keys.numpy(), axis=-1))
    return torch.argsort(keys, dim=-1)


class ToyDDPM:
    """Backend (see loops.protocol) holding N stacked residual-MLP noise predictors."""

    def __init__(self, config: DDPMConfig | None = None, dim: int = 2):
        self.config = (config or DDPMConfig()).validate()
        if self.config.learner in REFERENCE_LEARNERS:
            raise ValueError(f"the {self.config.learner} learner runs on toy.reference.ReferenceDDPM "
                             "(madlab.runner.build_backend picks it), not on the fast path")
        self.dim = dim
        self.device = torch.device(self.config.device)
        c = self.config
        ab = alpha_bar(c.schedule, c.T, beta_start=c.beta_start, beta_end=c.beta_end)
        betas = betas_from_alpha_bar(ab)
        ab = torch.cat([ab[:1], torch.cumprod(1 - betas[1:], 0)])  # consistent with clipped betas
        posterior = torch.zeros_like(betas)
        posterior[1:] = (1 - ab[:-1]) / (1 - ab[1:]) * betas[1:]
        to = dict(device=self.device, dtype=torch.float32)
        self.alpha_bar = ab.to(**to)
        self.betas = betas.to(**to)
        self.sigmas = (betas if c.variance == "beta" else posterior).sqrt().to(**to)
        self.act = ACTIVATIONS[c.activation]
        self.embed_dim = {"scaled": 1, "raw": 1, "sinusoidal": 2 * c.n_frequencies}[c.time_embedding]
        # the time input of every step t = 0..T: training gathers rows of it (a sinusoidal
        # embedding of every training point costs more than a gather)
        self.embed_grid = self.embed(torch.arange(c.T + 1, device=self.device))
        # fused row kernels (toy/fused_mlp.c): CPU, ReLU blocks with or without LayerNorm
        on_cpu = self.device.type == "cpu"
        fusable = on_cpu and c.activation == "relu" and c.width <= fused.MAX_WIDTH
        if c.kernels == "fused" and not fusable:
            raise ValueError("kernels='fused' needs the CPU and the relu activation")
        # opt-in torch.compile of the step and the sampler step (toy/compiled.py)
        self.compiled = (c.kernels or fused.mode()) == "compile"
        if self.compiled:
            compiled.check(self.device)
        self.fused = not self.compiled and fusable and fused.kernels(c.kernels) is not None
        # blocks sized for a CPU core's cache (measured: docs/performance.md); a GPU wants one
        # big block. None: decided per training call from the batch size (fused: ~10000 rows).
        self.seed_block = c.seed_block or (None if self.fused else 16 if on_cpu else 1 << 30)
        # compile: big blocks too, so that each compiled call's fixed cost (guards, wrapper;
        # ~0.1 ms) spreads over more rows
        self.sample_rows = c.sample_rows or (1 << 22 if not on_cpu else
                                             4096 if self.fused or self.compiled else 1024)

    @property
    def kernels(self) -> "fused.Kernels":
        return fused.kernels(self.config.kernels)

    # ----------------------------------------------------------------- network
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of one model (the ensemble adds a leading N)."""
        d, w, e = self.dim, self.config.width, self.embed_dim
        shapes = {"in.w": (d + e, w), "in.b": (1, w)}
        for i in range(self.config.depth):
            shapes |= {f"b{i}.w1": (w + e, w), f"b{i}.b1": (1, w),
                       f"b{i}.w2": (w, w), f"b{i}.b2": (1, w)}
            if self.config.layer_norm:
                shapes |= {f"b{i}.g1": (1, w), f"b{i}.h1": (1, w),
                           f"b{i}.g2": (1, w), f"b{i}.h2": (1, w)}
        return shapes | {"out.w": (w, d), "out.b": (1, d)}

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """Time input [N, B, e] for integer steps t [N, B] (or a broadcastable shape)."""
        c = self.config
        t = t.to(torch.float32)
        if c.time_embedding == "raw":
            return t.unsqueeze(-1)
        if c.time_embedding == "scaled":
            return (t / c.T).unsqueeze(-1)
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), c.n_frequencies, device=t.device))
        angle = (t / c.T).unsqueeze(-1) * freqs * math.pi / 2
        return torch.cat([torch.sin(angle), torch.cos(angle)], -1)

    def eps(self, p: Params, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t) for x [N, B, d] and integer t [N, B] -> [N, B, d]."""
        emb = self.embed(t).expand(*x.shape[:2], self.embed_dim)
        h = torch.baddbmm(p["in.b"], torch.cat([x, emb], -1), p["in.w"])
        w = self.config.width
        for i in range(self.config.depth):
            u = torch.baddbmm(p[f"b{i}.b1"], torch.cat([h, emb], -1), p[f"b{i}.w1"])
            if self.config.layer_norm:
                u = F.layer_norm(u, (w,)) * p[f"b{i}.g1"] + p[f"b{i}.h1"]
            u = torch.baddbmm(p[f"b{i}.b2"], self.act(u), p[f"b{i}.w2"])
            if self.config.layer_norm:
                u = F.layer_norm(u, (w,)) * p[f"b{i}.g2"] + p[f"b{i}.h2"]
            h = h + self.act(u)
        return torch.baddbmm(p["out.b"], h, p["out.w"])

    # ----------------------------------------------------------------- fast path
    def _layout(self) -> list[tuple[str, str, slice, tuple[int, ...]]]:
        """The flat buffer's pieces: (key, parameter, rows, shape of one seed's piece). The rows
        of in.w and b*.w1 that multiply the time input are pieces of their own, so that every
        gradient is written to a contiguous tensor (torch's batched-matmul fast path)."""
        d, w, e = self.dim, self.config.width, self.embed_dim
        layout = []
        for name, shape in self.shapes().items():
            split = {"in.w": d, **{f"b{i}.w1": w for i in range(self.config.depth)}}.get(name)
            if split is None:
                layout.append((name, name, slice(None), shape))
            else:
                layout += [(name + "x", name, slice(0, split), (split, shape[1])),
                           (name + "e", name, slice(split, None), (e, shape[1]))]
        return layout

    def _pack(self, model: Params, s0: int, s1: int) -> tuple[torch.Tensor, Params]:
        """Seeds s0..s1 of `model` copied into one flat buffer (piece-major: each piece a
        contiguous [S, ...] block) and the views of that buffer by key."""
        pieces = [model[name][s0:s1, rows].reshape(-1).to(self.device, torch.float32)
                  for _, name, rows, _ in self._layout()]
        # zero padding to a multiple of PACK_ALIGN elements: Adam's kernel takes the buffer's last
        # (size mod vector width) elements on a scalar path that rounds differently (lerp without
        # FMA), so without it the last seed of a block got other last digits than the same seed
        # in a block of another size, and a seed's numbers depended on the chunking
        size = sum(piece.numel() for piece in pieces)
        pieces.append(torch.zeros(-size % PACK_ALIGN, device=self.device))
        flat = torch.cat(pieces)
        return flat, self._views(flat, s1 - s0)

    def _views(self, flat: torch.Tensor, S: int) -> Params:
        views, start = {}, 0
        for key, _, _, shape in self._layout():
            size = S * math.prod(shape)
            views[key] = flat[start:start + size].view(S, *shape)
            start += size
        return views

    def _unpack(self, views: Params, out: Params, s0: int, s1: int) -> None:
        for key, name, rows, _ in self._layout():
            out[name][s0:s1, rows] = views[key]

    def _blocks(self, N: int, size: int) -> list[tuple[int, int]]:
        return [(s, min(s + size, N)) for s in range(0, N, size)]

    def _layer_norm(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """In place: u <- (u - mean) / sqrt(var + 1e-5) over the last dimension (F.layer_norm's
        statistics, biased variance); returns (normalized u, 1 / sqrt(var + 1e-5))."""
        u = u.sub_(u.mean(-1, keepdim=True))  # (torch.var_mean is 100x slower here)
        var = torch.linalg.vector_norm(u, dim=-1, keepdim=True).square_().div_(u.shape[-1])
        rstd = var.add_(1e-5).rsqrt_()
        return u.mul_(rstd), rstd

    @staticmethod
    def _layer_norm_grad(dy: torch.Tensor, n: torch.Tensor, rstd: torch.Tensor,
                         g: torch.Tensor) -> torch.Tensor:
        """d loss / d u for y = n g + h, n = LayerNorm(u): rstd (dn - mean(dn) - n mean(dn n))."""
        dn = dy * g
        m2 = (dn * n).mean(-1, keepdim=True)
        m1 = dn.mean(-1, keepdim=True)
        return dn.sub_(m1).addcmul_(n, m2, value=-1).mul_(rstd)

    def _act_(self, y: torch.Tensor) -> torch.Tensor:
        """The activation; relu and tanh in place (their gradient needs only the output)."""
        name = self.config.activation
        if name == "relu":
            return y.relu_()
        if name == "tanh":
            return y.tanh_()
        return self.act(y)

    def _act_grad(self, grad: torch.Tensor, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """d loss / d y for out = act(y) (y is only needed, and only kept, for silu and gelu)."""
        name = self.config.activation
        if name == "relu":
            return torch.ops.aten.threshold_backward(grad, out, 0.0)
        if name == "tanh":
            return torch.ops.aten.tanh_backward(grad, out)
        if name == "silu":
            return torch.ops.aten.silu_backward(grad, y)
        return torch.ops.aten.gelu_backward(grad, y)

    @staticmethod
    def _linear(b, h, w_h, emb, w_e) -> torch.Tensor:
        """[h, emb] @ [w_h; w_e] + b without concatenating: a per-row time input (training)
        is a second product added in place; one time for all rows (sampling) folds into b."""
        if emb.shape[1] == 1 and h.shape[1] != 1:
            return torch.baddbmm(torch.baddbmm(b, emb, w_e), h, w_h)
        return torch.baddbmm(b, h, w_h).baddbmm_(emb, w_e)

    def _forward(self, p: Params, x: torch.Tensor, emb: torch.Tensor, keep: bool):
        """eps_theta for a block: x [S, B, d], emb [S, B, e] (or [S, 1, e]) -> ([S, B, d], saved).

        The same function as `eps`: [h, emb] @ W is computed as h @ W[:w] + emb @ W[w:]."""
        c = self.config
        keep_y = keep and c.activation in ("silu", "gelu")
        h = self._linear(p["in.b"], x, p["in.wx"], emb, p["in.we"])
        saved = []
        for i in range(c.depth):
            u = self._linear(p[f"b{i}.b1"], h, p[f"b{i}.w1x"], emb, p[f"b{i}.w1e"])
            n1 = rstd1 = n2 = rstd2 = None
            if c.layer_norm:
                n1, rstd1 = self._layer_norm(u)
                u = torch.addcmul(p[f"b{i}.h1"], n1, p[f"b{i}.g1"])
            y1 = u.clone() if keep_y else None
            r1 = self._act_(u)
            u = torch.baddbmm(p[f"b{i}.b2"], r1, p[f"b{i}.w2"])
            if c.layer_norm:
                n2, rstd2 = self._layer_norm(u)
                u = torch.addcmul(p[f"b{i}.h2"], n2, p[f"b{i}.g2"])
            y2 = u.clone() if keep_y else None
            r2 = self._act_(u)
            if keep:
                saved.append((h, n1, rstd1, y1, r1, n2, rstd2, y2, r2))
                h = h + r2
            else:
                h = h.add_(r2)
        return torch.baddbmm(p["out.b"], h, p["out.w"]), (saved, h)

    def _backward(self, p: Params, grad: Params, x: torch.Tensor, emb: torch.Tensor, saved,
                  dout: torch.Tensor) -> None:
        """Write d loss / d p into `grad` (every element) given dout = d loss / d eps_theta."""
        c = self.config
        blocks, h = saved
        tr = lambda a: a.transpose(1, 2)  # noqa: E731
        torch.bmm(tr(h), dout, out=grad["out.w"])
        torch.sum(dout, 1, keepdim=True, out=grad["out.b"])
        dh = torch.bmm(dout, tr(p["out.w"]))
        for i in reversed(range(c.depth)):
            h, n1, rstd1, y1, r1, n2, rstd2, y2, r2 = blocks[i]
            du = self._act_grad(dh, y2, r2)
            if c.layer_norm:
                torch.sum(du * n2, 1, keepdim=True, out=grad[f"b{i}.g2"])
                torch.sum(du, 1, keepdim=True, out=grad[f"b{i}.h2"])
                du = self._layer_norm_grad(du, n2, rstd2, p[f"b{i}.g2"])
            torch.bmm(tr(r1), du, out=grad[f"b{i}.w2"])
            torch.sum(du, 1, keepdim=True, out=grad[f"b{i}.b2"])
            du = self._act_grad(torch.bmm(du, tr(p[f"b{i}.w2"])), y1, r1)
            if c.layer_norm:
                torch.sum(du * n1, 1, keepdim=True, out=grad[f"b{i}.g1"])
                torch.sum(du, 1, keepdim=True, out=grad[f"b{i}.h1"])
                du = self._layer_norm_grad(du, n1, rstd1, p[f"b{i}.g1"])
            torch.bmm(tr(h), du, out=grad[f"b{i}.w1x"])
            torch.bmm(tr(emb), du, out=grad[f"b{i}.w1e"])
            torch.sum(du, 1, keepdim=True, out=grad[f"b{i}.b1"])
            dh = dh.baddbmm_(du, tr(p[f"b{i}.w1x"]))
        torch.bmm(tr(x), dh, out=grad["in.wx"])
        torch.bmm(tr(emb), dh, out=grad["in.we"])
        torch.sum(dh, 1, keepdim=True, out=grad["in.b"])

    @staticmethod
    def _buf(ws: dict, name: str, *shape: int) -> torch.Tensor:
        """A scratch tensor reused across steps (fresh allocations of activation-sized tensors
        cost as much as a pass over them on a CPU: page faults)."""
        t = ws.get(name)
        if t is None or t.shape != shape:
            t = ws[name] = torch.empty(shape, dtype=torch.float32)
        return t

    def _forward_fused(self, p: Params, x: torch.Tensor, emb: torch.Tensor, keep: bool, ws: dict):
        """`_forward` with the input layer, each block's bias, time input, LayerNorm and affine
        (if the learner has them), ReLU and residual add, and the output layer done by the fused row kernels
        (toy/fused_mlp.c); the 64 x 64 matrix products stay with torch. Activations live in the
        scratch dict `ws` (valid until the next call with it)."""
        K, emb, buf = self.kernels, emb.contiguous(), self._buf
        S, B, _ = x.shape
        W = self.config.width
        h = buf(ws, "h0", S, B, W)
        K.fwd_in(x.contiguous(), p["in.wx"], p["in.b"], emb, p["in.we"], h)
        saved = []
        for i in range(self.config.depth):
            u1 = torch.bmm(h, p[f"b{i}.w1x"], out=buf(ws, f"u1.{i}", S, B, W))
            r1 = buf(ws, f"r1.{i}", S, B, W) if keep else u1
            if not self.config.layer_norm:  # relu(u + b + e W_e), then relu(u + b) + residual
                K.fwd_plain(u1, p[f"b{i}.b1"], emb, p[f"b{i}.w1e"], r1)
                u2 = torch.bmm(r1, p[f"b{i}.w2"], out=buf(ws, f"u2.{i}", S, B, W))
                h_next = buf(ws, f"h{i + 1}", S, B, W) if keep else h
                K.fwd_plain(u2, p[f"b{i}.b2"], None, None, None, res_in=h, res_out=h_next)
                if keep:
                    saved.append((h, u1, None, r1, u2, None))
                h = h_next
                continue
            st1 = (buf(ws, f"m1.{i}", S, B), buf(ws, f"s1.{i}", S, B)) if keep else (None, None)
            K.fwd(u1, p[f"b{i}.b1"], emb, p[f"b{i}.w1e"], p[f"b{i}.g1"], p[f"b{i}.h1"], r1, *st1)
            u2 = torch.bmm(r1, p[f"b{i}.w2"], out=buf(ws, f"u2.{i}", S, B, W))
            st2 = (buf(ws, f"m2.{i}", S, B), buf(ws, f"s2.{i}", S, B)) if keep else (None, None)
            h_next = buf(ws, f"h{i + 1}", S, B, W) if keep else h
            K.fwd(u2, p[f"b{i}.b2"], None, None, p[f"b{i}.g2"], p[f"b{i}.h2"], None, *st2,
                  res_in=h, res_out=h_next)
            if keep:
                saved.append((h, u1, st1, r1, u2, st2))
            h = h_next
        out = buf(ws, "out", S, B, self.dim)
        if self.dim <= fused.MAX_OUT:
            K.fwd_out(h, p["out.w"], p["out.b"], out)
        else:
            torch.baddbmm(p["out.b"], h, p["out.w"], out=out)
        return out, (saved, h)

    def _backward_fused(self, p: Params, grad: Params, x: torch.Tensor, emb: torch.Tensor, saved,
                        dout: torch.Tensor, ws: dict) -> None:
        """`_backward` for `_forward_fused`: every element of `grad` written."""
        K, emb, buf = self.kernels, emb.contiguous(), self._buf
        blocks, h = saved
        S, B, W = h.shape
        tr = lambda a: a.transpose(1, 2)  # noqa: E731
        dh = buf(ws, "dh", S, B, W)
        if self.dim <= fused.MAX_OUT:
            K.bwd_out(dout.contiguous(), h, p["out.w"], dh, grad["out.w"], grad["out.b"])
        else:
            torch.bmm(tr(h), dout, out=grad["out.w"])
            torch.sum(dout, 1, keepdim=True, out=grad["out.b"])
            torch.bmm(dout, tr(p["out.w"]), out=dh)
        dv, du = buf(ws, "dv", S, B, W), buf(ws, "du", S, B, W)
        for i in reversed(range(self.config.depth)):
            h, u1, st1, r1, u2, st2 = blocks[i]
            if st2 is None:  # no LayerNorm
                K.bwd_plain(dh, None, u2, p[f"b{i}.b2"], None, grad[f"b{i}.b2"], None, dv)
            else:
                K.bwd(dh, u2, p[f"b{i}.b2"], None, None, *st2, p[f"b{i}.g2"], p[f"b{i}.h2"],
                      grad[f"b{i}.g2"], grad[f"b{i}.h2"], grad[f"b{i}.b2"], None, dv)
            torch.bmm(tr(r1), dv, out=grad[f"b{i}.w2"])
            torch.bmm(dv, tr(p[f"b{i}.w2"]), out=du)
            if st1 is None:
                K.bwd_plain(du, r1, None, p[f"b{i}.b1"], emb, grad[f"b{i}.b1"], grad[f"b{i}.w1e"], du)
            else:
                K.bwd(du, u1, p[f"b{i}.b1"], emb, p[f"b{i}.w1e"], *st1, p[f"b{i}.g1"],
                      p[f"b{i}.h1"], grad[f"b{i}.g1"], grad[f"b{i}.h1"], grad[f"b{i}.b1"],
                      grad[f"b{i}.w1e"], du)
            torch.bmm(tr(h), du, out=grad[f"b{i}.w1x"])
            if i > 0:
                dh.baddbmm_(du, tr(p[f"b{i}.w1x"]))
        x = x.contiguous()
        K.bwd_in(dh, x, emb, grad["in.wx"], grad["in.b"], grad["in.we"])
        if self.config.depth:  # the first block's share of d loss / d h, (du W^T), reaches the
            # input layer's gradients as (x^T du) W^T etc.: [d + 2, 64] products instead of a
            # [rows, 64] x [64, 64] one
            parts = [buf(ws, key, *grad[key].shape) for key in ("in.wx", "in.b", "in.we")]
            K.bwd_in(du, x, emb, *parts)
            for key, part in zip(("in.wx", "in.b", "in.we"), parts):
                grad[key].baddbmm_(part, tr(p["b0.w1x"]))

    @staticmethod
    def _adam(param, grad, exp_avg, exp_avg_sq, step: torch.Tensor, lr: float,
              beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        """torch.optim.Adam's update (defaults, no weight decay) on one flat buffer, in place:
        torch's fused kernel (what Adam(fused=True) calls; one pass, no temporaries) when present.
        `step` is a 0-d float tensor on the buffer's device holding the 1-based step count."""
        if _FUSED_ADAM is not None and param.device.type in ("cpu", "cuda"):
            _FUSED_ADAM([param], [grad], [exp_avg], [exp_avg_sq], [], [step], lr=lr, beta1=beta1,
                        beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            return
        step = float(step)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        denom = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(eps)
        param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1 ** step))

    # ----------------------------------------------------------------- protocol
    def init(self, keys: StreamKeys) -> Params:
        """PyTorch's nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm (1, 0)."""
        shapes = self.shapes()
        sizes = [math.prod(s) for s in shapes.values()]
        u = keys.rand((sum(sizes),), device=self.device) * 2 - 1
        params, start = {}, 0
        for (name, shape), size in zip(shapes.items(), sizes):
            block = u[:, start:start + size].reshape(len(keys), *shape)
            start += size
            if name.endswith((".g1", ".g2")):
                params[name] = torch.ones_like(block)
            elif name.endswith((".h1", ".h2")):
                params[name] = torch.zeros_like(block)
            else:
                fan_in = shapes[name.replace(".b", ".w")][0] if ".b" in name else shape[0]
                params[name] = block / math.sqrt(fan_in)
        return params

    def train(self, model: Params, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> TrainedParams:
        """Adam on sum_k mean_batch ||eps - eps_theta_k(sqrt(ab) x0 + sqrt(1 - ab) eps, t)||^2 / d,
        from `model`'s weights with a fresh optimizer (moments zero, lr schedule from lr). The
        result carries its Adam state (`.adam`) for a fine-tune that continues it."""
        return self._train(model, data, epochs, keys, None)

    def finetune(self, model: Params, data: torch.Tensor, epochs: float,
                 keys: StreamKeys) -> TrainedParams:
        """The SIMS auxiliary fine-tune of a trained `model` (loops.algorithms.Sims): `train` when
        config.finetune is "restart"; with "continue", Adam goes on from the state `model`
        carries (its moments and step count) at the lr where its schedule ended, as one
        uninterrupted optimizer would."""
        if self.config.finetune == "restart":
            return self.train(model, data, epochs, keys)
        carry = adam_state(model)
        if carry is None:
            raise ValueError("finetune='continue' needs a model trained by ToyDDPM.train (it "
                             "carries the Adam state); this one carries none")
        return self._train(model, data, epochs, keys, carry)

    def _lr(self, step: int, total: int) -> float:
        """The lr of Adam step `step` (0-based) of a `total`-step training call."""
        c = self.config
        if c.lr_schedule == "constant":
            return c.lr
        return c.lr * (1 + (c.lr_end_factor - 1) * step / total)

    def _train(self, model: Params, data: torch.Tensor, epochs: float, keys: StreamKeys,
               carry: AdamState | None) -> TrainedParams:
        """`train` (carry None) or a continued fine-tune from the Adam state `carry`."""
        c = self.config
        data = data.to(self.device, torch.float32)
        N, n, d = data.shape
        batch = min(c.batch_size, n)
        per_epoch = math.ceil(n / batch)
        total_steps = max(1, round(epochs * per_epoch))
        n_epochs = math.ceil(total_steps / per_epoch)
        sqrt_ab, sqrt_1mab = self.alpha_bar.sqrt(), (1 - self.alpha_bar).sqrt()
        seeds = torch.arange(N, device=self.device).unsqueeze(-1)
        blocks = []  # per block of seeds: (s0, s1, params, views, grads, grad views, m, v)
        for s0, s1 in self._blocks(N, self.seed_block or max(1, round(FUSED_BLOCK_ROWS / batch))):
            flat, views = self._pack(model, s0, s1)
            gflat = torch.zeros_like(flat)          # its padding stays zero
            if carry is None:
                m, v = torch.zeros_like(flat), torch.zeros_like(flat)
            else:  # the moments in this call's block layout (seed blocks follow the batch size)
                m, v = (self._pack(carry[key], s0, s1)[0] for key in ("exp_avg", "exp_avg_sq"))
            blocks.append((s0, s1, flat, views, gflat, self._views(gflat, s1 - s0), m, v))
        step_t = torch.zeros((), device=self.device)  # Adam's step count, where its kernel reads it
        step0 = 0 if carry is None else int(carry["step"])   # Adam steps already taken
        fixed_lr = None if carry is None else float(carry["next_lr"])
        if self.fused:
            ws: dict = {}
            forward = lambda p, x, emb, keep: self._forward_fused(p, x, emb, keep, ws)  # noqa: E731
            backward = lambda *a: self._backward_fused(*a, ws)  # noqa: E731
        else:
            forward, backward = self._forward, self._backward
        if self.compiled:
            layout = tuple(key for key, _, _, _ in self._layout())
            grads_of = compiled.train_grads(c.depth, c.layer_norm, c.activation, layout)
        step = 0
        for chunk_start in range(0, n_epochs, RANDOM_CHUNK):
            chunk = min(RANDOM_CHUNK, n_epochs - chunk_start)
            # per seed, per epoch, per point: d noise values, one time-step draw, one shuffle key;
            # epochs chunk_start.. of one [n_epochs, n, d + 2] stream, whatever RANDOM_CHUNK is
            z = keys.randn((chunk, n, d + 2), offset=chunk_start * n * (d + 2), device=self.device)
            for e in range(chunk):
                steps = min(per_epoch, total_steps - step)
                if steps <= 0:
                    break
                eps_all = z[:, e, :, :d]
                t_all = (torch.special.ndtr(z[:, e, :, d]) * c.T).long().clamp(0, c.T - 1) + 1
                order = _argsort_rows(z[:, e, :, d + 1])
                x_all = data[seeds, order]
                xt_all = sqrt_ab[t_all].unsqueeze(-1) * x_all + sqrt_1mab[t_all].unsqueeze(-1) * eps_all
                emb_all = self.embed_grid[t_all]
                for s0, s1, flat, p, gflat, g, m, v in blocks:
                    for k in range(steps):
                        b = k * batch
                        xt, emb = xt_all[s0:s1, b:b + batch], emb_all[s0:s1, b:b + batch]
                        eps = eps_all[s0:s1, b:b + batch]
                        if self.compiled:
                            # contiguous: the noise is a strided view whose strides follow the epoch chunk,
                            # and a new stride would recompile
                            torch._foreach_copy_([g[k] for k in layout],
                                                 grads_of(p, xt, emb, eps.contiguous()))
                        else:
                            pred, saved = forward(p, xt, emb, keep=True)
                            dout = pred.sub_(eps).mul_(2.0 / (eps.shape[1] * d))
                            backward(p, g, xt, emb, saved, dout)
                        s = step + k  # steps already taken: lr decays linearly after each one
                        lr = fixed_lr if fixed_lr is not None else self._lr(s, total_steps)
                        self._adam(flat, gflat, m, v, step_t.fill_(step0 + s + 1), lr)
                step += steps
        new = lambda: {k: torch.empty((N, *shape), device=self.device)  # noqa: E731
                       for k, shape in self.shapes().items()}
        out, exp_avg, exp_avg_sq = new(), new(), new()
        for s0, s1, flat, p, _, _, m, v in blocks:
            self._unpack(p, out, s0, s1)
            self._unpack(self._views(m, s1 - s0), exp_avg, s0, s1)
            self._unpack(self._views(v, s1 - s0), exp_avg_sq, s0, s1)
        next_lr = fixed_lr if fixed_lr is not None else self._lr(total_steps, total_steps)
        return TrainedParams(out, {"step": step0 + total_steps, "exp_avg": exp_avg,
                                   "exp_avg_sq": exp_avg_sq, "next_lr": next_lr})

    def _eps_block(self, p: Params, x: torch.Tensor, t: int, S: int, omega: float | None,
                   ws: dict):
        """eps at integer step t for a block: p stacks S models (and S guides after them when
        omega is not None); x [S, P, d]; ws: scratch for the fused path."""
        emb = self.embed(torch.full((p["in.b"].shape[0], 1), t, device=self.device))
        x = x if omega is None else torch.cat([x, x])
        out, _ = (self._forward_fused(p, x, emb, False, ws) if self.fused
                  else self._forward(p, x, emb, keep=False))
        if omega is None:
            return out
        return (1 + omega) * out[:S] - omega * out[S:]

    def _compiled_step(self, p: Params, xb: torch.Tensor, z: torch.Tensor, t: int, S: int,
                       guided: bool, omega: float) -> None:
        """One ancestral step of a block in place through toy/compiled.py (kernels='compile'):
        the same update as `sample`'s, the coefficients as tensors so that t does not recompile."""
        c = self.config
        if not guided:
            p = {k: v[:S] for k, v in p.items()}
        emb = self.embed(torch.full((p["in.b"].shape[0], 1), t, device=self.device))
        beta, ab = self.betas[t], self.alpha_bar[t]
        sigma = self.sigmas[t] if t > 1 else torch.zeros((), device=self.device)
        step = compiled.sample_step(c.depth, c.layer_norm, c.activation)
        xb.copy_(step(S, guided, p, xb, emb, torch.tensor(omega, device=self.device),
                      beta / (1 - ab).sqrt(), 1 / (1 - beta).sqrt(), sigma * z))

    @torch.no_grad()
    def sample(self, model: Params, n: int, keys: StreamKeys, *,
               guide: Params | None = None, omega: float = 0.0) -> torch.Tensor:
        """DDPM ancestral sampling; with `guide`, eps = (1 + omega) eps_model - omega eps_guide
        at the reverse steps guide_t_min <= t <= guide_t_max (the guide is not evaluated at the
        others; an empty interval is standard sampling)."""
        c = self.config
        N = len(keys)
        guided = guide is not None and omega != 0 and c.guide_t_min <= min(c.guide_t_max, c.T)
        if n == 0:
            return torch.empty(N, 0, self.dim, device=self.device)
        S = max(1, min(N, self.sample_rows // n))        # seeds per block
        P = min(n, max(1, self.sample_rows // S))        # points per block
        blocks = []
        for s0, s1 in self._blocks(N, S):
            if guided:  # the block's models, then its guides: one batched forward for both
                stack = {k: torch.cat([model[k][s0:s1], guide[k][s0:s1]]) for k in model}
                _, p = self._pack(stack, 0, 2 * (s1 - s0))
            else:
                _, p = self._pack(model, s0, s1)
            blocks.append((s0, s1, p))
        x = torch.empty(N, n, self.dim, device=self.device)
        ws: dict = {}
        for chunk_start in range(0, c.T + 1, RANDOM_CHUNK):
            steps = min(RANDOM_CHUNK, c.T + 1 - chunk_start)
            z = keys.randn((steps, n, self.dim), offset=chunk_start * n * self.dim, device=self.device)
            for s0, s1, p in blocks:
                for q0 in range(0, n, P):
                    xb = x[s0:s1, q0:q0 + P]
                    for j in range(steps):
                        i = chunk_start + j  # 0: x_T; i >= 1: the noise of the step from t = T + 1 - i
                        if i == 0:
                            xb.copy_(z[s0:s1, 0, q0:q0 + P])
                            continue
                        t = c.T + 1 - i
                        if self.compiled:
                            self._compiled_step(p, xb, z[s0:s1, j, q0:q0 + P], t, s1 - s0,
                                                guided and c.guide_t_min <= t <= c.guide_t_max, omega)
                            continue
                        if not guided or c.guide_t_min <= t <= c.guide_t_max:
                            eps = self._eps_block(p, xb, t, s1 - s0, omega if guided else None, ws)
                        else:  # outside the guidance interval: the block's models only
                            eps = self._eps_block({k: v[:s1 - s0] for k, v in p.items()}, xb, t,
                                                  s1 - s0, None, ws)
                        beta, ab = self.betas[t], self.alpha_bar[t]
                        xn = (xb - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
                        if t > 1:
                            xn = xn + self.sigmas[t] * z[s0:s1, j, q0:q0 + P]
                        xb.copy_(xn)
        return x

    def combine(self, models: Sequence[Params], weights: Sequence[float]) -> Params:
        return {k: sum(w * m[k] for m, w in zip(models, weights)) for k in models[0]}
