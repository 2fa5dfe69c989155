"""The toy DDPM written plainly: autograd, torch.optim.Adam, stacked per-seed parameters.

The readable reference beside toy/ddpm.py's fast path (STYLE.md pattern 5) and the bench on
which learners are screened (docs/calibration.md, "Learner screen"): every knob is a field of
`ReferenceConfig`, and a new architecture is one more function, with no backward to write.

Seeds are the leading dimension of every parameter ([N, fan_in, fan_out] weights); the network is
batched matrix products; one torch.optim.Adam updates the whole stack with loss = sum over seeds
of each seed's mean loss. Adam is elementwise and seed k's loss depends only on seed k's
parameters, so this equals N separate Adams. Every random number of seed k comes from seed k's
own generator, drawn in `_draw_init`, `_draw_training` and `_draw_sampling` only, with the same
shapes and order as toy.ddpm.ToyDDPM, so the default learner gives the fast path's numbers (up to
float rounding; tests/test_reference.py).

DDPM (Ho et al. 2020): x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, the network predicts eps
(Eq. 14), the sampler is ancestral sampling (Algorithm 2) over t = T, ..., 1 with sigma_t^2 =
beta_t. SIMS guidance (Eq. 5) mixes noise predictions, (1 + w) eps_base - w eps_aux, optionally
only for t in a guidance interval (the paper's appendix A).

Named learners: `learner(name)` is the record of that name in toy.learners (its knobs, and the
fields below that only this file has). resmlp-ln's are ReferenceConfig's defaults. toy-diffusion
is the learner the SIMS paper cites, albarji/toy-diffusion's swissRoll.ipynb: a 40-step cosine
schedule over t = 0..39 on the grid t / 40 (= T = 39 reverse steps on the grid t / (T + 1)),
alpha-bar normalised by its t = 0 value, no beta clip; Linear(3, 64) -> 4 x [Linear(64, 64),
ReLU] -> Linear(64, 2) with the raw integer t concatenated to x; eps-MSE with t uniform on 0..39;
Adam 1e-3, constant (the notebook creates a LinearLR but never steps it); batch 2048 in data
order; the DDPM sampler t = 39..1 adding sqrt(beta_t) noise for t > 1; PyTorch's default
nn.Linear initialisation. The notebook also standardises its data set, x <- (x - x.mean()) /
x.std() with two scalars: `--standardize` adds that around any learner (toy/standardize.py; per
generation on D^t, samples mapped back). Nothing else the notebook does is missing; the Figure 5
recipe study chose it off (docs/studies/fig5-paper-recipe).

One module above ~400 lines on purpose: a reader checks the cited learner against the notebook
in one file (network, training, sampler), independent of the fast path it cross-checks.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from loops.rng import StreamKeys
from toy.config import DDPMConfig
from toy.guidance import sims_eps
from toy.learners import LEARNERS
from toy.params import TrainedParams, adam_state
from toy.sampling import ancestral_step
from toy.schedules import SCHEDULES, alpha_bar, betas_from_alpha_bar

Params = dict[str, torch.Tensor]

ARCHITECTURES = ("resmlp", "mlp")
TIME_INPUTS = ("scaled", "raw", "sinusoidal")
GRIDS = ("T+1", "T")
LR_SCHEDULES = ("linear", "constant")
CARRY = ("restart", "continue")
ACTIVATIONS = {"relu": F.relu, "silu": F.silu, "gelu": F.gelu, "tanh": torch.tanh}
RANDOM_CHUNK = 8  # epochs (training) or steps (sampling) drawn per call, as toy.ddpm draws them


@dataclass
class ReferenceConfig:
    """Every knob of the reference toy DDPM; the defaults are toy.ddpm.DDPMConfig's."""

    # diffusion
    T: int = 40                        # reverse steps: the sampler runs t = T, ..., 1
    schedule: str = "cosine"           # cosine | linear (toy.schedules)
    grid: str = "T+1"                  # cosine grid u = t / (T + 1) (ab_T > 0) | t / T (ab_T = 0: beta_T clipped)
    max_beta: float = 0.999            # every beta_t clipped to this (bites at the first reverse steps)
    train_from_zero: bool = False      # training t uniform on 0..T (toy-diffusion) instead of 1..T
    # network
    arch: str = "resmlp"               # resmlp (residual blocks) | mlp (Linear, then depth x [Linear, act])
    width: int = 64                    # hidden units
    depth: int = 2                     # residual blocks (resmlp) or hidden Linear + act layers (mlp)
    layer_norm: bool = True            # resmlp: LayerNorm inside each block
    activation: str = "relu"           # relu | silu | gelu | tanh
    time_input: str = "scaled"         # scaled (t / T) | raw (t) | sinusoidal
    n_frequencies: int = 8             # sinusoidal time input: frequencies
    # training
    batch_size: int = 2048             # >= |D|: full batch
    shuffle: bool = True               # reshuffle the data every epoch (False: data order)
    lr: float = 3e-3                   # Adam learning rate
    lr_schedule: str = "linear"        # linear decay to lr * lr_end_factor over one training call | constant
    lr_end_factor: float = 0.01
    # SIMS knobs (`finetune`: the auxiliary fine-tune; `train` always starts a fresh Adam)
    finetune_adam: str = "restart"     # restart: fresh Adam moments | continue: the start model's moments and step count
    finetune_lr: str = "restart"       # restart: the lr schedule from lr again | continue: the lr where the start model's schedule ended
    guidance_from: int = 1             # SIMS guidance only for guidance_from <= t <= guidance_to
    guidance_to: int | None = None     # None: T
    precision: str = "fp32"            # fp32 | bf16: the network under torch.autocast (products in bf16)
    device: str = "cpu"

    def validate(self) -> "ReferenceConfig":
        choices = [("schedule", SCHEDULES), ("grid", GRIDS), ("arch", ARCHITECTURES),
                   ("activation", tuple(ACTIVATIONS)), ("time_input", TIME_INPUTS),
                   ("lr_schedule", LR_SCHEDULES), ("finetune_adam", CARRY), ("finetune_lr", CARRY),
                   ("precision", ("fp32", "bf16"))]
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        checks = [(self.T >= 1, f"T must be positive, got {self.T}"),
                  (self.width >= 1 and self.depth >= 0, "width must be positive and depth non-negative"),
                  (self.batch_size >= 1, f"batch size must be positive, got {self.batch_size}"),
                  (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
                  (0 < self.max_beta <= 1, f"max_beta must be in (0, 1], got {self.max_beta}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def learner(name: str, **changes) -> ReferenceConfig:
    """A named learner's configuration (toy.learners.LEARNERS), with optional field changes."""
    try:
        spec = LEARNERS[name]
    except KeyError:
        raise ValueError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}") from None
    named = ReferenceConfig(T=spec.T, depth=spec.depth, time_input=spec.time_embedding,
                            layer_norm=spec.layer_norm, activation=spec.activation, lr=spec.lr,
                            lr_schedule=spec.lr_schedule, **spec.reference_only)
    return replace(named, **changes).validate()


def reference_config(fast: DDPMConfig) -> ReferenceConfig:
    """The reference configuration of a `DDPMConfig` (validated: the learner's knobs resolved):
    its named learner (`learner`) with the DDPM options applied. How madlab.runner runs the
    toy-diffusion learner; for resmlp-* it is the fast path's model (tests/test_reference.py)."""
    fast = fast.validate()
    if fast.variance != "beta" or fast.beta_start is not None or fast.beta_end is not None:
        raise ValueError("the reference toy DDPM samples with variance beta and the default "
                         "linear-schedule endpoints")
    return learner(fast.learner, T=fast.T, schedule=fast.schedule, width=fast.width,
                   depth=fast.depth, layer_norm=fast.layer_norm, activation=fast.activation,
                   time_input=fast.time_embedding, n_frequencies=fast.n_frequencies,
                   batch_size=fast.batch_size, lr=fast.lr, lr_schedule=fast.lr_schedule,
                   lr_end_factor=fast.lr_end_factor, finetune_adam=fast.finetune,
                   finetune_lr=fast.finetune, guidance_from=fast.guide_t_min,
                   guidance_to=fast.guide_t_max, precision=fast.precision, device=fast.device)


class Ensemble(TrainedParams):
    """N stacked models (name -> [N, ...]), and the Adam state where their last training call
    left it (`adam`: step, exp_avg / exp_avg_sq (name -> [N, ...]), next_lr; toy.params). Any
    parameter dict is a model here too (a plain one carries no optimizer state)."""

    @property
    def params(self) -> Params:
        return self


class ReferenceDDPM:
    """Backend (loops.protocol) holding N stacked noise predictors, trained with autograd."""

    def __init__(self, config: ReferenceConfig | None = None, dim: int = 2):
        self.config = c = (config or ReferenceConfig()).validate()
        self.dim = dim
        self.device = torch.device(c.device)
        if c.schedule == "cosine" and c.grid == "T":
            u = torch.arange(c.T + 1, dtype=torch.float64) / c.T
            f = torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
            ab = f / f[0]
        else:  # toy.schedules: the cosine grid u = t / (T + 1), or the linear schedule
            ab = alpha_bar(c.schedule, c.T)
        betas = betas_from_alpha_bar(ab, max_beta=c.max_beta)
        ab = torch.cat([ab[:1], torch.cumprod(1 - betas[1:], 0)])  # consistent with clipped betas
        to = dict(device=self.device, dtype=torch.float32)
        self.alpha_bar, self.betas = ab.to(**to), betas.to(**to)
        self.sigmas = betas.sqrt().to(**to)          # sigma_t^2 = beta_t
        self.act = ACTIVATIONS[c.activation]
        self.embed_dim = 2 * c.n_frequencies if c.time_input == "sinusoidal" else 1

    # ----------------------------------------------------------------- network
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter shapes of one model, weights [fan_in, fan_out] (the stack adds a leading N).
        resmlp uses toy.ddpm.ToyDDPM's names and order, so the same tensors run in both."""
        d, w, e, c = self.dim, self.config.width, self.embed_dim, self.config
        shapes = {"in.w": (d + e, w), "in.b": (1, w)}
        for i in range(c.depth):
            if c.arch == "mlp":
                shapes |= {f"h{i}.w": (w, w), f"h{i}.b": (1, w)}
                continue
            shapes |= {f"b{i}.w1": (w + e, w), f"b{i}.b1": (1, w), f"b{i}.w2": (w, w), f"b{i}.b2": (1, w)}
            if c.layer_norm:
                shapes |= {f"b{i}.g1": (1, w), f"b{i}.h1": (1, w), f"b{i}.g2": (1, w), f"b{i}.h2": (1, w)}
        return shapes | {"out.w": (w, d), "out.b": (1, d)}

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """Time input [..., e] for integer steps t [...]."""
        c = self.config
        t = t.to(torch.float32)
        if c.time_input == "raw":
            return t.unsqueeze(-1)
        if c.time_input == "scaled":
            return (t / c.T).unsqueeze(-1)
        freqs = torch.exp(torch.linspace(0, math.log(1000.0), c.n_frequencies, device=t.device))
        angle = (t / c.T).unsqueeze(-1) * freqs * math.pi / 2
        return torch.cat([torch.sin(angle), torch.cos(angle)], -1)

    def eps(self, p: Params, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t) for x [N, B, d] and integer t [N, B] (or broadcastable) -> [N, B, d];
        with precision bf16 under torch.autocast (the products in bfloat16, forward and backward),
        returned in float32."""
        if self.config.precision == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self._eps(p, x, t).float()
        return self._eps(p, x, t)

    def _eps(self, p: Params, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.embed(t).expand(*x.shape[:2], self.embed_dim)
        c = self.config
        h = torch.baddbmm(p["in.b"], torch.cat([x, emb], -1), p["in.w"])
        for i in range(c.depth):
            if c.arch == "mlp":   # Linear + act; no activation after the input layer
                h = self.act(torch.baddbmm(p[f"h{i}.b"], h, p[f"h{i}.w"]))
                continue
            u = torch.baddbmm(p[f"b{i}.b1"], torch.cat([h, emb], -1), p[f"b{i}.w1"])
            if c.layer_norm:
                u = F.layer_norm(u, (c.width,)) * p[f"b{i}.g1"] + p[f"b{i}.h1"]
            u = torch.baddbmm(p[f"b{i}.b2"], self.act(u), p[f"b{i}.w2"])
            if c.layer_norm:
                u = F.layer_norm(u, (c.width,)) * p[f"b{i}.g2"] + p[f"b{i}.h2"]
            h = h + self.act(u)
        return torch.baddbmm(p["out.b"], h, p["out.w"])

    # ----------------------------------------------------------------- random numbers
    # Every draw of the backend is in these three functions: row k from seed k's stream, at the
    # offsets toy.ddpm uses (so both draw the same numbers whatever RANDOM_CHUNK is).
    def _draw_init(self, keys: StreamKeys, size: int) -> torch.Tensor:
        """[N, size] uniforms on [0, 1)."""
        return keys.rand((size,), device=self.device)

    def _draw_training(self, keys: StreamKeys, first: int, epochs: int, n: int):
        """Per seed, epoch and data point: the noise eps [N, epochs, n, d], the step t [N, epochs,
        n] and the shuffle order [N, epochs, n] (toy.ddpm's draws: one normal per quantity)."""
        c, d = self.config, self.dim
        z = keys.randn((epochs, n, d + 2), offset=first * n * (d + 2), device=self.device)
        u = torch.special.ndtr(z[..., d])
        if c.train_from_zero:
            t = (u * (c.T + 1)).long().clamp(0, c.T)
        else:
            t = (u * c.T).long().clamp(0, c.T - 1) + 1
        order = torch.argsort(z[..., d + 1], dim=-1, stable=True)
        return z[..., :d], t, order

    def _draw_sampling(self, keys: StreamKeys, first: int, steps: int, n: int) -> torch.Tensor:
        """[N, steps, n, d] standard normals from step `first` on: x_T, then the noise of each
        reverse step."""
        return keys.randn((steps, n, self.dim), offset=first * n * self.dim, device=self.device)

    # ----------------------------------------------------------------- protocol
    def init(self, keys: StreamKeys) -> Ensemble:
        """PyTorch's nn.Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
        biases; LayerNorm gains 1, biases 0."""
        shapes = self.shapes()
        sizes = [math.prod(s) for s in shapes.values()]
        u = self._draw_init(keys, sum(sizes)) * 2 - 1
        params, start = {}, 0
        for (name, shape), size in zip(shapes.items(), sizes):
            block = u[:, start:start + size].reshape(len(keys), *shape)
            start += size
            head, _, kind = name.rpartition(".")
            if kind in ("g1", "g2"):          # LayerNorm gain
                params[name] = torch.ones_like(block)
            elif kind in ("h1", "h2"):        # LayerNorm bias
                params[name] = torch.zeros_like(block)
            else:                             # a weight, or a bias (fan-in of its layer's weight)
                fan_in = shapes[f"{head}.w{kind[1:]}"][0] if kind.startswith("b") else shape[0]
                params[name] = block / math.sqrt(fan_in)
        return Ensemble(params)

    def _lr(self, step: int, total: int) -> float:
        c = self.config
        if c.lr_schedule == "constant":
            return c.lr
        return c.lr * (1 + (c.lr_end_factor - 1) * step / total)

    def train(self, model: Ensemble, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> Ensemble:
        """A copy of `model` trained by Adam on sum_k mean_batch ||eps - eps_theta_k(x_t, t)||^2 / d,
        with a fresh optimizer; the result carries its Adam state for `finetune`."""
        return self._train(model, data, epochs, keys, None)

    def finetune(self, model: Params, data: torch.Tensor, epochs: float,
                 keys: StreamKeys) -> Ensemble:
        """The SIMS auxiliary fine-tune of a trained `model`: `train`, but with finetune_adam /
        finetune_lr = "continue" Adam goes on from the state `model` carries (moments and step
        count) and the lr stays where the start model's schedule ended."""
        carried = adam_state(model)
        if carried is None and "continue" in (self.config.finetune_adam, self.config.finetune_lr):
            raise ValueError("a continued fine-tune needs a model trained by this backend (it "
                             "carries the Adam state); this one carries none")
        return self._train(model, data, epochs, keys, carried)

    def _train(self, model: Params, data: torch.Tensor, epochs: float, keys: StreamKeys,
               carried: dict | None) -> Ensemble:
        c = self.config
        data = data.to(self.device, torch.float32)
        N, n, d = data.shape
        batch = min(c.batch_size, n)
        per_epoch = math.ceil(n / batch)
        total = max(1, round(epochs * per_epoch))
        n_epochs = math.ceil(total / per_epoch)
        params = {k: v.detach().clone().to(self.device).requires_grad_(True) for k, v in model.items()}
        opt = torch.optim.Adam(list(params.values()), lr=c.lr)
        if carried is not None and c.finetune_adam == "continue":
            for k, p in params.items():
                opt.state[p] = {"step": torch.tensor(float(carried["step"])),
                                "exp_avg": carried["exp_avg"][k].clone(),
                                "exp_avg_sq": carried["exp_avg_sq"][k].clone()}
        fixed_lr = carried["next_lr"] if carried is not None and c.finetune_lr == "continue" else None
        sqrt_ab, sqrt_1mab = self.alpha_bar.sqrt(), (1 - self.alpha_bar).sqrt()
        seeds = torch.arange(N, device=self.device).unsqueeze(-1)
        step = 0
        for chunk_start in range(0, n_epochs, RANDOM_CHUNK):
            chunk = min(RANDOM_CHUNK, n_epochs - chunk_start)
            eps_all, t_all, order = self._draw_training(keys, chunk_start, chunk, n)
            for e in range(chunk):
                x_all = data[seeds, order[:, e]] if c.shuffle else data
                for b in range(0, n, batch):
                    if step >= total:
                        break
                    x0, eps, t = x_all[:, b:b + batch], eps_all[:, e, b:b + batch], t_all[:, e, b:b + batch]
                    xt = sqrt_ab[t].unsqueeze(-1) * x0 + sqrt_1mab[t].unsqueeze(-1) * eps
                    loss = (self.eps(params, xt, t) - eps).pow(2).mean(dim=(1, 2)).sum()
                    for group in opt.param_groups:
                        group["lr"] = fixed_lr if fixed_lr is not None else self._lr(step, total)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
        state = [opt.state[p] for p in params.values()]
        adam = {"step": int(state[0]["step"]),
                "exp_avg": {k: s["exp_avg"].detach().clone() for k, s in zip(params, state)},
                "exp_avg_sq": {k: s["exp_avg_sq"].detach().clone() for k, s in zip(params, state)},
                "next_lr": fixed_lr if fixed_lr is not None else self._lr(total, total)}
        return Ensemble({k: v.detach() for k, v in params.items()}, adam)

    def guided_at(self, t: int) -> bool:
        """Whether SIMS guidance applies at reverse step t (the guidance interval)."""
        c = self.config
        return c.guidance_from <= t <= (c.T if c.guidance_to is None else c.guidance_to)

    @torch.no_grad()
    def sample(self, model: Ensemble, n: int, keys: StreamKeys, *,
               guide: Ensemble | None = None, omega: float = 0.0) -> torch.Tensor:
        """DDPM ancestral sampling (Ho et al. Algorithm 2), [N, n, d]; with `guide`, eps =
        (1 + omega) eps_model - omega eps_guide at the steps of the guidance interval."""
        c = self.config
        N = len(keys)
        guided = guide is not None and omega != 0
        x = torch.empty(N, n, self.dim, device=self.device)
        for chunk_start in range(0, c.T + 1, RANDOM_CHUNK):
            steps = min(RANDOM_CHUNK, c.T + 1 - chunk_start)
            z = self._draw_sampling(keys, chunk_start, steps, n)
            for j in range(steps):
                i = chunk_start + j          # 0: x_T; i >= 1: the step from t = T + 1 - i
                if i == 0:
                    x = z[:, 0].clone()
                    continue
                t = c.T + 1 - i
                t_in = torch.full((N, 1), t, device=self.device)
                eps = self.eps(model, x, t_in)
                if guided and self.guided_at(t):
                    eps = sims_eps(eps, self.eps(guide, x, t_in), omega)
                x = ancestral_step(x, eps, t, self.betas, self.alpha_bar, self.sigmas, z[:, j])
        return x

    def eps_slope(self, model: Ensemble, target, radii: Sequence[float] = (2, 4, 8),
                  t: int | None = None) -> torch.Tensor:
        """`radial_eps_slope` of every model at step t (default T, the first reverse step) for a
        Gaussian target: [N, len(radii)], 1 = the exact eps of the noised p_r."""
        t = self.config.T if t is None else t
        N = next(iter(model.values())).shape[0]
        t_in = torch.full((N, 1), t, device=self.device)
        return radial_eps_slope(lambda x: self.eps(model, x.to(self.device).expand(N, *x.shape), t_in).cpu(),
                                float(self.alpha_bar[t]), target.mean, target.cov, radii)

    def combine(self, models: Sequence[Ensemble], weights: Sequence[float]) -> Ensemble:
        """sum_i weights[i] theta_i (SIMS Eq. 6); the optimizer state is not combined."""
        return Ensemble({k: sum(w * m[k] for m, w in zip(models, weights))
                         for k in models[0]})


@torch.no_grad()
def gaussian_eps(x: torch.Tensor, alpha_bar_t: float, mean, cov) -> torch.Tensor:
    """The exact noise prediction E[eps | x_t = x] when p_r = N(mean, cov): the noised marginal is
    N(sqrt(ab) mean, Sigma_t), Sigma_t = ab cov + (1 - ab) I, and eps*(x) = sqrt(1 - ab)
    Sigma_t^-1 (x - sqrt(ab) mean). x [..., d] (float64 result)."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    cov = torch.as_tensor(cov, dtype=torch.float64)
    sigma_t = alpha_bar_t * cov + (1 - alpha_bar_t) * torch.eye(len(mean), dtype=torch.float64)
    centred = (x.to(torch.float64) - math.sqrt(alpha_bar_t) * mean).reshape(-1, len(mean))
    eps = math.sqrt(1 - alpha_bar_t) * torch.linalg.solve(sigma_t, centred.T).T
    return eps.reshape(x.shape)


@torch.no_grad()
def radial_eps_slope(eps_at: Callable[[torch.Tensor], torch.Tensor], alpha_bar_t: float,
                     mean, cov, radii: Sequence[float], n_directions: int = 64) -> torch.Tensor:
    """The network's radial noise prediction far from the data, relative to the exact one.

    For a Gaussian p_r = N(mu, Sigma) the noised marginal is N(sqrt(ab) mu, Sigma_t) with
    Sigma_t = ab Sigma + (1 - ab) I, and the exact noise prediction is eps*(x) =
    sqrt(1 - ab) Sigma_t^-1 (x - sqrt(ab) mu). At radius r along unit directions u (evenly
    spaced angles, 2-D) the slope is mean_u <eps_theta(c + r u), u> / <eps*(c + r u), u>,
    c = sqrt(ab) mu: 1 for the exact eps, < 1 where the network pulls too weakly towards the data.

    eps_at: probe points x [D, d] -> eps_theta of the N models there at the fixed step,
    [N, D, d]. Returns the slope per model and radius, [N, len(radii)].
    """
    mean = torch.as_tensor(mean, dtype=torch.float64)
    angle = torch.arange(n_directions, dtype=torch.float64) * (2 * math.pi / n_directions)
    u = torch.stack([angle.cos(), angle.sin()], -1)                       # [D, 2]
    centre = math.sqrt(alpha_bar_t) * mean
    out = []
    for r in radii:
        x = centre + r * u
        exact = gaussian_eps(x, alpha_bar_t, mean, cov)
        probe = eps_at(x.to(torch.float32)).to(torch.float64)            # [N, D, 2]
        out.append(((probe * u).sum(-1) / (exact * u).sum(-1)).mean(-1))
    return torch.stack(out, -1)
