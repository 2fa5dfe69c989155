"""The peers' way, for side-by-side benchmarks: one plain nn.Module + torch.optim.Adam per seed.

The same network, loss, optimizer, lr schedule, time-step and noise distributions and sampler as
toy.ddpm.ToyDDPM (defaults), written as the public model-collapse codebases write it: a module
with nn.Linear / nn.LayerNorm, autograd, one model trained after the other.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from toy.ddpm import ToyDDPM
from toy.guidance import sims_eps
from toy.sampling import ancestral_step


class Block(nn.Module):
    def __init__(self, width: int, embed_dim: int, layer_norm: bool, act):
        super().__init__()
        self.lin1 = nn.Linear(width + embed_dim, width)
        self.lin2 = nn.Linear(width, width)
        self.norm1 = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.norm2 = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.act = act

    def forward(self, h, emb):
        u = self.act(self.norm1(self.lin1(torch.cat([h, emb], -1))))
        return h + self.act(self.norm2(self.lin2(u)))


class EpsNet(nn.Module):
    """eps_theta(x_t, t) of one seed, the architecture of ToyDDPM.eps."""

    def __init__(self, backend: ToyDDPM):
        super().__init__()
        c, e = backend.config, backend.embed_dim
        self.backend = backend
        self.inp = nn.Linear(backend.dim + e, c.width)
        self.blocks = nn.ModuleList(Block(c.width, e, c.layer_norm, backend.act)
                                    for _ in range(c.depth))
        self.out = nn.Linear(c.width, backend.dim)

    def forward(self, x, t):
        emb = self.backend.embed(t)
        h = self.inp(torch.cat([x, emb], -1))
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)

    @torch.no_grad()
    def load(self, params: dict, k: int) -> "EpsNet":
        """Copy seed k of a ToyDDPM parameter stack (weights stored [fan_in, fan_out])."""
        self.inp.weight.copy_(params["in.w"][k].T)
        self.inp.bias.copy_(params["in.b"][k, 0])
        for i, b in enumerate(self.blocks):
            b.lin1.weight.copy_(params[f"b{i}.w1"][k].T)
            b.lin1.bias.copy_(params[f"b{i}.b1"][k, 0])
            b.lin2.weight.copy_(params[f"b{i}.w2"][k].T)
            b.lin2.bias.copy_(params[f"b{i}.b2"][k, 0])
            if self.backend.config.layer_norm:
                b.norm1.weight.copy_(params[f"b{i}.g1"][k, 0])
                b.norm1.bias.copy_(params[f"b{i}.h1"][k, 0])
                b.norm2.weight.copy_(params[f"b{i}.g2"][k, 0])
                b.norm2.bias.copy_(params[f"b{i}.h2"][k, 0])
        self.out.weight.copy_(params["out.w"][k].T)
        self.out.bias.copy_(params["out.b"][k, 0])
        return self


def train(net: EpsNet, data: torch.Tensor, epochs: float, z: torch.Tensor | None = None,
          generator: torch.Generator | None = None) -> EpsNet:
    """Train one model on data [n, d]: Adam, linear lr decay, DDPM loss. `z` (optional)
    [epochs, n, d + 2] supplies the random numbers exactly as ToyDDPM.train draws them."""
    c, b = net.backend.config, net.backend
    n, d = data.shape
    batch = min(c.batch_size, n)
    per_epoch = math.ceil(n / batch)
    total = max(1, round(epochs * per_epoch))
    opt = torch.optim.Adam(net.parameters(), lr=c.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1 + (c.lr_end_factor - 1) * s / total if c.lr_schedule == "linear" else 1.0)
    sqrt_ab, sqrt_1mab = b.alpha_bar.sqrt(), (1 - b.alpha_bar).sqrt()
    step, epoch = 0, 0
    while step < total:
        r = z[epoch] if z is not None else torch.randn(n, d + 2, generator=generator)
        eps_all = r[:, :d]
        t_all = (torch.special.ndtr(r[:, d]) * c.T).long().clamp(0, c.T - 1) + 1
        x_all = data[torch.argsort(r[:, d + 1])]
        for s in range(0, n, batch):
            if step >= total:
                break
            x0, eps, t = x_all[s:s + batch], eps_all[s:s + batch], t_all[s:s + batch]
            xt = sqrt_ab[t].unsqueeze(-1) * x0 + sqrt_1mab[t].unsqueeze(-1) * eps
            loss = (net(xt, t) - eps).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        epoch += 1
    return net


@torch.no_grad()
def sample(net: EpsNet, n: int, guide: EpsNet | None = None, omega: float = 0.0,
           z: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM ancestral sampling of n points; `z` [T + 1, n, d] optional, as ToyDDPM.sample draws."""
    b, T = net.backend, net.backend.config.T
    z = z if z is not None else torch.randn(T + 1, n, b.dim, generator=generator)
    x = z[0]
    for i in range(1, T + 1):
        t = T + 1 - i
        t_in = torch.full((1,), t)
        eps = net(x, t_in.expand(n))
        if guide is not None and omega != 0:
            eps = sims_eps(eps, guide(x, t_in.expand(n)), omega)
        x = ancestral_step(x, eps, t, b.betas, b.alpha_bar, b.sigmas, z[i])
    return x
