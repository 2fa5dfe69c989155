"""Sampling the toy DDPM's stacked seeds: ancestral sampling (Ho et al. 2020, Algorithm 2) with
SIMS guidance (Eq. 5, toy/guidance.py).

x_T ~ N(0, I); for t = T, ..., 1: x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(1 - beta_t)
+ sigma_t z (no noise at t = 1), where eps is the model's noise prediction, or with a guide
(the SIMS auxiliary model) (1 + w) eps_model - w eps_guide at the steps of the guidance interval.
`ancestral_step` is that line; the reference path (toy/reference.py) takes it from here too.

The fast sampler runs blocks of seeds x points (the backend's `sample_rows`) through the fast
path's forward (toy/fastpath.py); a guided step is one batched forward over the block's models
stacked on their guides. Random numbers: per seed, per step, per point, d normals from seed k's
stream by offset (step 0 is x_T), so the blocks and the draw chunk change no number.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from loops.rng import StreamKeys
from toy import compiled
from toy.guidance import sims_eps
from toy.network import Params

if TYPE_CHECKING:
    from toy.ddpm import ToyDDPM


def ancestral_step(x: torch.Tensor, eps: torch.Tensor, t: int, betas: torch.Tensor,
                   alpha_bar: torch.Tensor, sigmas: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """x_{t-1} from x_t and the noise prediction eps (Algorithm 2, line 4); z: this step's
    standard normals, added as sigma_t z for t > 1."""
    beta, ab = betas[t], alpha_bar[t]
    x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
    return x + sigmas[t] * z if t > 1 else x


def _eps_block(net: "ToyDDPM", p: Params, x: torch.Tensor, t: int, S: int, omega: float | None,
               ws: dict):
    """eps at integer step t for a block: p stacks S models (and S guides after them when
    omega is not None); x [S, P, d]; ws: scratch for the fused path."""
    emb = net.embed(torch.full((p["in.b"].shape[0], 1), t, device=net.device))
    x = x if omega is None else torch.cat([x, x])
    out, _ = (net._forward_fused(p, x, emb, False, ws) if net.fused
              else net._forward(p, x, emb, keep=False))
    if omega is None:
        return out
    return sims_eps(out[:S], out[S:], omega)


def _compiled_step(net: "ToyDDPM", p: Params, xb: torch.Tensor, z: torch.Tensor, t: int, S: int,
                   guided: bool, omega: float) -> None:
    """One ancestral step of a block in place through toy/compiled.py (kernels='compile'):
    the same update as `sample`'s, the coefficients as tensors so that t does not recompile."""
    c = net.config
    if not guided:
        p = {k: v[:S] for k, v in p.items()}
    emb = net.embed(torch.full((p["in.b"].shape[0], 1), t, device=net.device))
    beta, ab = net.betas[t], net.alpha_bar[t]
    sigma = net.sigmas[t] if t > 1 else torch.zeros((), device=net.device)
    step = compiled.sample_step(c.depth, c.layer_norm, c.activation, net.dtype)
    xb.copy_(step(S, guided, p, xb, emb, torch.tensor(omega, device=net.device),
                  beta / (1 - ab).sqrt(), 1 / (1 - beta).sqrt(), sigma * z))


@torch.no_grad()
def sample(net: "ToyDDPM", model: Params, n: int, keys: StreamKeys, guide: Params | None,
           omega: float, chunk: int) -> torch.Tensor:
    """n points [N, n, d] per seed by ancestral sampling; with `guide`, eps = (1 + omega)
    eps_model - omega eps_guide at the reverse steps guide_t_min <= t <= guide_t_max (the guide
    is not evaluated at the others; an empty interval is standard sampling). Draws `chunk`
    steps of random numbers per call."""
    c = net.config
    N = len(keys)
    guided = guide is not None and omega != 0 and c.guide_t_min <= min(c.guide_t_max, c.T)
    if n == 0:
        return torch.empty(N, 0, net.dim, device=net.device)
    S = max(1, min(N, net.sample_rows // n))        # seeds per block
    P = min(n, max(1, net.sample_rows // S))        # points per block
    blocks = []
    for s0, s1 in net._blocks(N, S):
        if guided:  # the block's models, then its guides: one batched forward for both
            stack = {k: torch.cat([model[k][s0:s1], guide[k][s0:s1]]) for k in model}
            _, p = net._pack(stack, 0, 2 * (s1 - s0))
        else:
            _, p = net._pack(model, s0, s1)
        blocks.append((s0, s1, p))
    x = torch.empty(N, n, net.dim, device=net.device)
    ws: dict = {}
    for chunk_start in range(0, c.T + 1, chunk):
        steps = min(chunk, c.T + 1 - chunk_start)
        z = keys.randn((steps, n, net.dim), offset=chunk_start * n * net.dim, device=net.device)
        for s0, s1, p in blocks:
            for q0 in range(0, n, P):
                xb = x[s0:s1, q0:q0 + P]
                for j in range(steps):
                    i = chunk_start + j  # 0: x_T; i >= 1: the noise of the step from t = T + 1 - i
                    if i == 0:
                        xb.copy_(z[s0:s1, 0, q0:q0 + P])
                        continue
                    t = c.T + 1 - i
                    if net.compiled:
                        _compiled_step(net, p, xb, z[s0:s1, j, q0:q0 + P], t, s1 - s0,
                                       guided and c.guide_t_min <= t <= c.guide_t_max, omega)
                        continue
                    if not guided or c.guide_t_min <= t <= c.guide_t_max:
                        eps = _eps_block(net, p, xb, t, s1 - s0, omega if guided else None, ws)
                    else:  # outside the guidance interval: the block's models only
                        eps = _eps_block(net, {k: v[:s1 - s0] for k, v in p.items()}, xb, t,
                                         s1 - s0, None, ws)
                    xb.copy_(ancestral_step(xb, eps, t, net.betas, net.alpha_bar, net.sigmas,
                                            z[s0:s1, j, q0:q0 + P]))
    return x
