"""The toy DDPM's noise predictor eps_theta(x_t, t), written plainly, for N stacked seeds.

A residual MLP: an input layer on [x_t, e(t)], `depth` blocks h <- h + act(norm(W2 act(norm(W1
[h, e(t)] + b1)) + b2)) (LayerNorm only if the learner has it), an output layer back to d. Every
parameter has the seed as its leading dimension ([N, fan_in, fan_out] weights, [N, 1, fan_out]
biases), so the forward pass is batched matrix products and seed k's output depends only on seed
k's parameters. `ResMLP.eps` is the readable reference that the fast path (toy/fastpath.py) and
the compiled path (toy/compiled.py) are tested against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from loops.rng import StreamKeys
from toy.config import DDPMConfig

Params = dict[str, torch.Tensor]

ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "tanh": torch.tanh}  # toy.config.ACTIVATION_NAMES


class ResMLP:
    """eps_theta of N stacked seeds: its parameter shapes, time input, forward and initialisation."""

    def __init__(self, config: DDPMConfig | None = None, dim: int = 2):
        self.config = c = (config or DDPMConfig()).validate()
        self.dim = dim                  # d, the data dimension
        self.device = torch.device(c.device)
        self.act = ACTIVATIONS[c.activation]
        self.embed_dim = {"scaled": 1, "raw": 1, "sinusoidal": 2 * c.n_frequencies}[c.time_embedding]
        # the time input of every step t = 0..T: training gathers rows of it (a sinusoidal
        # embedding of every training point costs more than a gather)
        self.embed_grid = self.embed(torch.arange(c.T + 1, device=self.device))

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
