"""The toy DDPM's network on its fast path: packed parameters, a hand-written backward, fused kernels.

The same function as `ResMLP.eps` (toy/network.py), computed for a block of seeds whose
parameters are views of one flat buffer (what the flat Adam of toy/training.py updates): no
autograd, no concatenation of the time input ([h, e] @ W is h @ W[:w] + e @ W[w:]), LayerNorm by
its closed-form gradient, activations and scratch tensors reused across steps. On the CPU, each
ReLU block's bias, time input, LayerNorm (if any), ReLU and residual add run as one fused C pass
per row (toy/fused.py); elsewhere torch ops, or `torch.compile` when asked (toy/compiled.py).
Which one runs is decided here, once per backend (`fused`, `compiled`), together with the block
sizes that keep a step's working set in the CPU cache (docs/performance.md). Blocks and kernels
only reorder independent work: no number changes beyond float rounding.
"""
from __future__ import annotations

import math

import torch

from toy import compiled, fused
from toy.config import DDPMConfig
from toy.network import Params, ResMLP

PACK_ALIGN = 64           # a packed parameter buffer's length is a multiple of this (see _pack)


class FastResMLP(ResMLP):
    """ResMLP with the packed forward and backward that training and sampling run."""

    def __init__(self, config: DDPMConfig | None = None, dim: int = 2):
        super().__init__(config, dim)
        c = self.config
        # fused row kernels (toy/fused_mlp.c): CPU, ReLU blocks with or without LayerNorm
        on_cpu = self.device.type == "cpu"
        fusable = on_cpu and c.activation == "relu" and c.width <= fused.MAX_WIDTH
        if c.kernels == "fused" and not fusable:
            raise ValueError("kernels='fused' needs the CPU and the relu activation")
        # opt-in torch.compile of the step and the sampler step (toy/compiled.py); bf16 products
        # exist only there (the casts fuse into inductor's loops)
        self.dtype = torch.bfloat16 if c.precision == "bf16" else torch.float32
        self.compiled = c.precision == "bf16" or (c.kernels or fused.mode()) == "compile"
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
