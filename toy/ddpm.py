"""The toy DDPM backend, vectorized across seeds: N independent MLP denoisers as stacked tensors.

Every parameter has the seed as its leading dimension ([N, fan_in, fan_out] weights), the forward
pass is batched matrix products, one Adam updates the stack, and the loss is the sum over seeds of
each seed's mean loss. Adam is elementwise and seed k's loss depends only on seed k's parameters,
so the N models train exactly as N separate models would (up to float rounding).

Model eps_theta(x_t, t) predicts the noise (Ho et al. 2020, Eq. 14); sampling is DDPM ancestral
sampling (Algorithm 2). SIMS guidance mixes noise predictions, which equals mixing scores since
s = -eps / sqrt(1 - alpha_bar_t):  eps = (1 + w) eps_base - w eps_aux.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from loops.rng import rand, randn
from toy.schedules import alpha_bar, betas_from_alpha_bar

Params = dict[str, torch.Tensor]

TIME_EMBEDDINGS = ("scaled", "raw", "sinusoidal")
ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "tanh": torch.tanh}
VARIANCES = ("beta", "posterior")
LR_SCHEDULES = ("linear", "constant")
RANDOM_CHUNK = 8  # epochs (training) or steps (sampling) drawn per call: fixed, so seeds stay independent of N


@dataclass
class DDPMConfig:
    """Every knob of the toy DDPM (defaults: see README, calibrated in docs/calibration.md)."""

    T: int = 40                       # diffusion steps
    schedule: str = "cosine"          # cosine | linear
    beta_start: float | None = None   # linear schedule only
    beta_end: float | None = None     # linear schedule only
    width: int = 64                   # hidden units
    depth: int = 2                    # residual blocks
    time_embedding: str = "scaled"    # scaled (t / T) | raw (t) | sinusoidal
    n_frequencies: int = 8            # sinusoidal embedding: frequencies
    layer_norm: bool = True           # LayerNorm inside each block
    activation: str = "relu"          # relu | silu | gelu | tanh
    batch_size: int = 64              # minibatch size (>= |D| means full batch)
    lr: float = 1e-3                  # Adam learning rate
    lr_schedule: str = "linear"       # linear decay to lr * lr_end_factor over one training call | constant
    lr_end_factor: float = 0.01
    variance: str = "beta"            # sampler variance sigma_t^2: beta_t | posterior beta-tilde_t
    device: str = "cpu"

    def validate(self) -> "DDPMConfig":
        checks = [
            (self.T >= 1, f"T must be positive, got {self.T}"),
            (self.width >= 1 and self.depth >= 0, "width must be positive and depth non-negative"),
            (self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.time_embedding in TIME_EMBEDDINGS,
             f"unknown time embedding {self.time_embedding!r}; choose one of {', '.join(TIME_EMBEDDINGS)}"),
            (self.activation in ACTIVATIONS,
             f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}"),
            (self.variance in VARIANCES,
             f"unknown sampler variance {self.variance!r}; choose one of {', '.join(VARIANCES)}"),
            (self.lr_schedule in LR_SCHEDULES,
             f"unknown lr schedule {self.lr_schedule!r}; choose one of {', '.join(LR_SCHEDULES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        alpha_bar(self.schedule, self.T, beta_start=self.beta_start, beta_end=self.beta_end)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class ToyDDPM:
    """Backend (see loops.protocol) holding N stacked residual-MLP noise predictors."""

    def __init__(self, config: DDPMConfig | None = None, dim: int = 2):
        self.config = (config or DDPMConfig()).validate()
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

    # ----------------------------------------------------------------- protocol
    def init(self, generators: Sequence[torch.Generator]) -> Params:
        """PyTorch's nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)); LayerNorm (1, 0)."""
        shapes = self.shapes()
        sizes = [math.prod(s) for s in shapes.values()]
        u = rand(generators, (sum(sizes),), device=self.device) * 2 - 1
        params, start = {}, 0
        for (name, shape), size in zip(shapes.items(), sizes):
            block = u[:, start:start + size].reshape(len(generators), *shape)
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
              generators: Sequence[torch.Generator]) -> Params:
        """Adam on sum_k mean_batch ||eps - eps_theta_k(sqrt(ab) x0 + sqrt(1 - ab) eps, t)||^2 / d."""
        c = self.config
        data = data.to(self.device, torch.float32)
        N, n, d = data.shape
        batch = min(c.batch_size, n)
        per_epoch = math.ceil(n / batch)
        total_steps = max(1, round(epochs * per_epoch))
        n_epochs = math.ceil(total_steps / per_epoch)
        params = {k: v.detach().clone().requires_grad_(True) for k, v in model.items()}
        opt = torch.optim.Adam(params.values(), lr=c.lr)
        sqrt_ab, sqrt_1mab = self.alpha_bar.sqrt(), (1 - self.alpha_bar).sqrt()
        seeds = torch.arange(N, device=self.device).unsqueeze(-1)
        step = 0
        for chunk_start in range(0, n_epochs, RANDOM_CHUNK):
            chunk = min(RANDOM_CHUNK, n_epochs - chunk_start)
            # per seed, per epoch, per point: d noise values, one time-step draw, one shuffle key
            z = randn(generators, (chunk, n, d + 2), device=self.device)
            for e in range(chunk):
                eps_all = z[:, e, :, :d]
                t_all = (torch.special.ndtr(z[:, e, :, d]) * c.T).long().clamp(0, c.T - 1) + 1
                order = torch.argsort(z[:, e, :, d + 1], dim=1)
                x_all = data[seeds, order]
                for b in range(0, n, batch):
                    if step >= total_steps:
                        break
                    x0, eps, t = x_all[:, b:b + batch], eps_all[:, b:b + batch], t_all[:, b:b + batch]
                    xt = sqrt_ab[t].unsqueeze(-1) * x0 + sqrt_1mab[t].unsqueeze(-1) * eps
                    loss = (self.eps(params, xt, t) - eps).pow(2).mean(dim=(1, 2)).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    if c.lr_schedule == "linear":
                        frac = step / total_steps
                        for group in opt.param_groups:
                            group["lr"] = c.lr * (1 + (c.lr_end_factor - 1) * frac)
        return {k: v.detach() for k, v in params.items()}

    @torch.no_grad()
    def sample(self, model: Params, n: int, generators: Sequence[torch.Generator], *,
               guide: Params | None = None, omega: float = 0.0) -> torch.Tensor:
        """DDPM ancestral sampling; with `guide`, eps = (1 + omega) eps_model - omega eps_guide."""
        c = self.config
        N = len(generators)
        x = None
        for chunk_start in range(0, c.T + 1, RANDOM_CHUNK):
            steps = min(RANDOM_CHUNK, c.T + 1 - chunk_start)
            z = randn(generators, (steps, n, self.dim), device=self.device)
            for j in range(steps):
                i = chunk_start + j  # 0: x_T; i >= 1: the noise of the step from t = T + 1 - i
                if i == 0:
                    x = z[:, 0]
                    continue
                t = c.T + 1 - i
                t_in = torch.full((N, 1), t, device=self.device)
                eps = self.eps(model, x, t_in)
                if guide is not None and omega != 0:
                    eps = (1 + omega) * eps - omega * self.eps(guide, x, t_in)
                beta, ab = self.betas[t], self.alpha_bar[t]
                x = (x - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
                if t > 1:
                    x = x + self.sigmas[t] * z[:, j]
        return x

    def combine(self, models: Sequence[Params], weights: Sequence[float]) -> Params:
        return {k: sum(w * m[k] for m, w in zip(models, weights)) for k in models[0]}
