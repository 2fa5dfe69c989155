"""Training the toy DDPM's stacked seeds (Ho et al. 2020, Algorithm 1), Adam on one flat buffer.

Loss: the sum over seeds of each seed's mean ||eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t)
eps, t)||^2 / d. Adam is elementwise and seed k's loss depends only on seed k's parameters, so
one Adam over the stack trains the N models exactly as N separate Adams would (up to float
rounding). The seeds train in blocks (toy/fastpath.py packs each block's parameters, gradients
and moments into flat buffers); a block-step is the fast path's forward and backward, then
torch's fused Adam kernel over the block's buffer.

Random numbers: per seed, per epoch, per point, d noise values, one time-step draw and one
shuffle key, all from seed k's stream by offset (so neither the block sizes nor the draw chunk
change a number).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from loops.rng import StreamKeys
from toy import compiled
from toy.network import Params
from toy.params import AdamState, TrainedParams

if TYPE_CHECKING:
    from toy.ddpm import ToyDDPM

_FUSED_ADAM = getattr(torch, "_fused_adam_", None)  # torch >= 2.0 (CPU kernel since 2.4)
FUSED_BLOCK_ROWS = 10000  # rows (seeds x batch) per training block on the fused CPU path (benchmarks blocks)


def argsort_rows(keys: torch.Tensor) -> torch.Tensor:
    """argsort along the last dimension: numpy's on the CPU (5x faster than torch's here; the
    keys are continuous draws, so both give the same permutation but for exact ties)."""
    if keys.device.type == "cpu":
        return torch.from_numpy(np.argsort(keys.numpy(), axis=-1))
    return torch.argsort(keys, dim=-1)


def adam(param, grad, exp_avg, exp_avg_sq, step: torch.Tensor, lr: float,
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


def learning_rate(net: "ToyDDPM", step: int, total: int) -> float:
    """The lr of Adam step `step` (0-based) of a `total`-step training call."""
    c = net.config
    if c.lr_schedule == "constant":
        return c.lr
    return c.lr * (1 + (c.lr_end_factor - 1) * step / total)


def train(net: "ToyDDPM", model: Params, data: torch.Tensor, epochs: float, keys: StreamKeys,
          carry: AdamState | None, chunk: int) -> TrainedParams:
    """Adam from `model`'s weights on data [N, n, d] for `epochs` epochs: with a fresh optimizer
    (carry None: moments zero, lr schedule from lr), or continued from the Adam state `carry`
    (its moments and step count, at its next_lr). Draws `chunk` epochs of random numbers per
    call. The result carries its Adam state (`.adam`)."""
    c = net.config
    data = data.to(net.device, torch.float32)
    N, n, d = data.shape
    batch = min(c.batch_size, n)
    per_epoch = math.ceil(n / batch)
    total_steps = max(1, round(epochs * per_epoch))
    n_epochs = math.ceil(total_steps / per_epoch)
    sqrt_ab, sqrt_1mab = net.alpha_bar.sqrt(), (1 - net.alpha_bar).sqrt()
    seeds = torch.arange(N, device=net.device).unsqueeze(-1)
    blocks = []  # per block of seeds: (s0, s1, params, views, grads, grad views, m, v)
    for s0, s1 in net._blocks(N, net.seed_block or max(1, round(FUSED_BLOCK_ROWS / batch))):
        flat, views = net._pack(model, s0, s1)
        gflat = torch.zeros_like(flat)          # its padding stays zero
        if carry is None:
            m, v = torch.zeros_like(flat), torch.zeros_like(flat)
        else:  # the moments in this call's block layout (seed blocks follow the batch size)
            m, v = (net._pack(carry[key], s0, s1)[0] for key in ("exp_avg", "exp_avg_sq"))
        blocks.append((s0, s1, flat, views, gflat, net._views(gflat, s1 - s0), m, v))
    step_t = torch.zeros((), device=net.device)  # Adam's step count, where its kernel reads it
    step0 = 0 if carry is None else int(carry["step"])   # Adam steps already taken
    fixed_lr = None if carry is None else float(carry["next_lr"])
    if net.fused:
        ws: dict = {}
        forward = lambda p, x, emb, keep: net._forward_fused(p, x, emb, keep, ws)  # noqa: E731
        backward = lambda *a: net._backward_fused(*a, ws)  # noqa: E731
    else:
        forward, backward = net._forward, net._backward
    if net.compiled:
        layout = tuple(key for key, _, _, _ in net._layout())
        grads_of = compiled.train_grads(c.depth, c.layer_norm, c.activation, layout, net.dtype)
    step = 0
    for chunk_start in range(0, n_epochs, chunk):
        epochs_now = min(chunk, n_epochs - chunk_start)
        # per seed, per epoch, per point: d noise values, one time-step draw, one shuffle key;
        # epochs chunk_start.. of one [n_epochs, n, d + 2] stream, whatever the chunk is
        z = keys.randn((epochs_now, n, d + 2), offset=chunk_start * n * (d + 2), device=net.device)
        for e in range(epochs_now):
            steps = min(per_epoch, total_steps - step)
            if steps <= 0:
                break
            eps_all = z[:, e, :, :d]
            t_all = (torch.special.ndtr(z[:, e, :, d]) * c.T).long().clamp(0, c.T - 1) + 1
            order = argsort_rows(z[:, e, :, d + 1])
            x_all = data[seeds, order]
            xt_all = sqrt_ab[t_all].unsqueeze(-1) * x_all + sqrt_1mab[t_all].unsqueeze(-1) * eps_all
            emb_all = net.embed_grid[t_all]
            for s0, s1, flat, p, gflat, g, m, v in blocks:
                for k in range(steps):
                    b = k * batch
                    xt, emb = xt_all[s0:s1, b:b + batch], emb_all[s0:s1, b:b + batch]
                    eps = eps_all[s0:s1, b:b + batch]
                    if net.compiled:
                        # contiguous: the noise is a strided view whose strides follow the epoch chunk,
                        # and a new stride would recompile
                        torch._foreach_copy_([g[k] for k in layout],
                                             grads_of(p, xt, emb, eps.contiguous()))
                    else:
                        pred, saved = forward(p, xt, emb, keep=True)
                        dout = pred.sub_(eps).mul_(2.0 / (eps.shape[1] * d))
                        backward(p, g, xt, emb, saved, dout)
                    s = step + k  # steps already taken: lr decays linearly after each one
                    lr = fixed_lr if fixed_lr is not None else learning_rate(net, s, total_steps)
                    adam(flat, gflat, m, v, step_t.fill_(step0 + s + 1), lr)
            step += steps
    new = lambda: {k: torch.empty((N, *shape), device=net.device)  # noqa: E731
                   for k, shape in net.shapes().items()}
    out, exp_avg, exp_avg_sq = new(), new(), new()
    for s0, s1, flat, p, _, _, m, v in blocks:
        net._unpack(p, out, s0, s1)
        net._unpack(net._views(m, s1 - s0), exp_avg, s0, s1)
        net._unpack(net._views(v, s1 - s0), exp_avg_sq, s0, s1)
    next_lr = fixed_lr if fixed_lr is not None else learning_rate(net, total_steps, total_steps)
    return TrainedParams(out, {"step": step0 + total_steps, "exp_avg": exp_avg,
                               "exp_avg_sq": exp_avg_sq, "next_lr": next_lr})
