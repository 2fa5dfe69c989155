"""`EDMBackend`: an ensemble of N EDM image denoisers behind the `loops.protocol.Backend` protocol.

Member k is its own module (N is small at image scale), trained in turn with its own Adam and an
EMA copy; every random number of member k (initialisation, minibatches, σ, noise, dropout,
sampling) comes from stream keys[k] (drawn on the device by counter; torch's own generator, seeded
from the key, only for module initialisation and dropout), so a seed's model never depends on the
seeds beside it.
The training budget is counted in images seen: epochs × |D| (budget "epochs"), or the number
given in thousands of images (budget "kimg", the paper's unit). On CUDA the forward pass of
training runs in bfloat16 autocast (mixed precision); sampling runs in float32.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from loops.rng import StreamKeys
from madlab.edm.config import EDMConfig  # its options; `from madlab.edm.backend import EDMConfig` keeps working
from madlab.edm.data import to_uint8, to_unit
from madlab.edm.guidance import SimsGuidance
from madlab.edm.loss import denoising_loss, draw_sigma
from madlab.edm.networks import make_unet
from madlab.edm.precond import Denoiser
from madlab.edm.sampler import ImageNoise, sample_images


@dataclass
class EDMEnsemble:
    """N denoisers, their EMA copies, and how many images each has seen."""

    nets: list[Denoiser]
    emas: list[Denoiser]
    images_seen: int = 0

    def sampling_net(self, k: int, use_ema: bool) -> Denoiser:
        return self.emas[k] if use_ema else self.nets[k]


DRAW_CHUNK = 16  # training steps whose σ and noise are drawn per call (memory only: draws are by offset)
# sub-streams of one member's training keys
DROPOUT, SHUFFLE, SIGMA, NOISE = range(4)


def batches(n: int, batch: int, keys: StreamKeys, device=None) -> Iterator[torch.Tensor]:
    """Endless minibatch indices: shuffled epochs, back to back. Epoch e's permutation is the
    (stable) argsort of uniforms e n .. (e + 1) n - 1 of the one-member stream `keys`."""
    pending = torch.empty(0, dtype=torch.long, device=device)
    epoch = 0
    while True:
        while len(pending) < batch:
            u = keys.rand((n,), offset=epoch * n, dtype=torch.float64, device=device)[0]
            pending = torch.cat([pending, torch.argsort(u, stable=True)])
            epoch += 1
        yield pending[:batch]
        pending = pending[batch:]


class EDMBackend:
    """Backend (see loops.protocol) for images of shape event_shape = (C, H, W)."""

    def __init__(self, config: EDMConfig | None = None, event_shape: Sequence[int] = (1, 8, 8)):
        self.config = (config or EDMConfig()).validate()
        self.event_shape = tuple(event_shape)
        C, H, W = self.event_shape
        if H != W:
            raise ValueError(f"square images only, got {H}×{W}")
        self.device = torch.device(self.config.device)
        self.saved = 0
        make_unet(self.config.net, H, C)  # fail early on a size that does not fit

    # ----------------------------------------------------------------- building blocks
    def build(self) -> Denoiser:
        C, H, _ = self.event_shape
        return Denoiser(make_unet(self.config.net, H, C), self.config.precond, self.config.sigma_data)

    def budget_images(self, epochs: float, n: int) -> int:
        """Images each member sees in one training call."""
        if self.config.budget == "kimg":
            return max(1, round(epochs * 1000))
        return max(1, round(epochs * n))

    def autocast(self):
        enabled = self.config.amp and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    # ----------------------------------------------------------------- protocol
    def init(self, keys: StreamKeys) -> EDMEnsemble:
        nets = []
        for seed in keys.int_seeds():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                nets.append(self.build().to(self.device))
        return EDMEnsemble(nets, [copy.deepcopy(net) for net in nets], 0)

    def train(self, model: EDMEnsemble, data: torch.Tensor, epochs: float,
              keys: StreamKeys) -> EDMEnsemble:
        """A copy of `model` trained on data [N, n, C, H, W] (values in [-1, 1]) for the budget."""
        c = self.config
        N, n = data.shape[:2]
        batch = min(c.batch_size, n)
        steps = max(1, math.ceil(self.budget_images(epochs, n) / batch))
        out = EDMEnsemble([copy.deepcopy(m) for m in model.nets], [copy.deepcopy(m) for m in model.emas],
                          model.images_seen + steps * batch)
        for k in range(N):
            self.train_member(out.nets[k], out.emas[k], data[k], steps, model.images_seen, keys[k])
        if c.checkpoint_dir:
            self.saved += 1
            self.save(out, Path(c.checkpoint_dir) / f"edm-{self.saved:04d}.pt")
        return out

    def train_member(self, net: Denoiser, ema: Denoiser, data: torch.Tensor, steps: int,
                     images_seen: int, keys: StreamKeys) -> None:
        """`steps` Adam steps of one member on its data [n, C, H, W], updating net and ema in place;
        `keys`: that member's stream (one key)."""
        c = self.config
        data = data.to(self.device, torch.float32)
        devices = []
        if self.device.type == "cuda":
            devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(keys.fold(DROPOUT).int_seeds()[0])  # dropout: this member's own stream
            net.train()
            opt = torch.optim.Adam(net.parameters(), lr=c.lr, betas=(0.9, 0.999), eps=1e-8)
            B = min(c.batch_size, len(data))
            order = batches(len(data), B, keys.fold(SHUFFLE), self.device)
            sigma_keys, noise_keys = keys.fold(SIGMA), keys.fold(NOISE)
            rampup = c.lr_rampup_kimg * 1000
            for step in range(steps):
                idx = next(order)
                j = step % DRAW_CHUNK
                if j == 0:  # steps step .. step + DRAW_CHUNK - 1 of one stream each, on the device
                    chunk = min(DRAW_CHUNK, steps - step)
                    zs = sigma_keys.randn((chunk, B), offset=step * B, device=self.device)[0]
                    us = sigma_keys.rand((chunk, B), offset=step * B, device=self.device)[0]
                    per = B * math.prod(self.event_shape)
                    noises = noise_keys.randn((chunk, B, *self.event_shape), offset=step * per,
                                              device=self.device)[0]
                sigma = draw_sigma(zs[j], us[j], c.precond, c.P_mean, c.P_std)
                noise = noises[j]
                with self.autocast():
                    loss = denoising_loss(net, data[idx], sigma, noise).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                seen_now = (step + 1) * B
                for group in opt.param_groups:
                    group["lr"] = c.lr * (min(seen_now / rampup, 1.0) if rampup > 0 else 1.0)
                for p in net.parameters():
                    if p.grad is not None:
                        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                opt.step()
                self.update_ema(ema, net, images_seen + seen_now, B)
        net.eval()
        ema.eval()

    @torch.no_grad()
    def update_ema(self, ema: Denoiser, net: Denoiser, images_seen: int, batch: int) -> None:
        """EMA with a half-life in images: β = 0.5^(batch / half-life), half-life ramped up early on."""
        c = self.config
        if c.ema_kimg <= 0:
            return
        half_life = c.ema_kimg * 1000
        if c.ema_rampup > 0:
            half_life = min(half_life, images_seen * c.ema_rampup)
        beta = 0.5 ** (batch / max(half_life, 1e-8))
        for p_ema, p in zip(ema.parameters(), net.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(ema.buffers(), net.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def sample(self, model: EDMEnsemble, n: int, keys: StreamKeys, *,
               guide: EDMEnsemble | None = None, omega: float = 0.0) -> torch.Tensor:
        """[N, n, C, H, W] images in [-1, 1] by Heun sampling; with `guide`, SIMS guidance
        D = D_model + ω (D_model - D_guide) inside [guide_sigma_lo, guide_sigma_hi]."""
        c = self.config
        use_ema = c.ema_kimg > 0
        out = []
        for k in range(len(keys)):
            noise = ImageNoise.from_keys(keys[k], n, self.event_shape, self.device)
            base = model.sampling_net(k, use_ema).eval()
            aux = guide.sampling_net(k, use_ema).eval() if guide is not None and omega != 0 else None
            denoise = SimsGuidance(base, aux, omega, c.guide_sigma_lo, c.guide_sigma_hi)
            x = sample_images(denoise, noise, c.sample_batch, **c.sampler()).clamp(-1, 1).cpu()
            out.append(to_unit(to_uint8(x)) if c.quantize else x)
        return torch.stack(out)

    def combine(self, models: Sequence[EDMEnsemble], weights: Sequence[float]) -> EDMEnsemble:
        """θ = Σ_i weights[i] θ_i for every member (raw and EMA weights alike)."""
        def mix(nets: list[Denoiser]) -> Denoiser:
            out = copy.deepcopy(nets[0])
            states = [m.state_dict() for m in nets]
            out.load_state_dict({key: sum(w * s[key] for s, w in zip(states, weights))
                                 if states[0][key].is_floating_point() else states[0][key]
                                 for key in states[0]})
            return out

        N = len(models[0].nets)
        return EDMEnsemble([mix([m.nets[k] for m in models]) for k in range(N)],
                           [mix([m.emas[k] for m in models]) for k in range(N)],
                           max(m.images_seen for m in models))

    # ----------------------------------------------------------------- checkpoints
    def save(self, model: EDMEnsemble, path: Path) -> None:
        """Write an ensemble (weights, EMA weights, images seen, config) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"config": asdict(self.config), "event_shape": self.event_shape,
                "images_seen": model.images_seen,
                "nets": [m.state_dict() for m in model.nets], "emas": [m.state_dict() for m in model.emas]}
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, path)

    def load(self, path: Path) -> EDMEnsemble:
        """Read an ensemble written by `save` (onto this backend's device)."""
        blob = torch.load(Path(path), map_location="cpu", weights_only=False)
        if tuple(blob["event_shape"]) != self.event_shape or blob["config"]["net"] != self.config.net:
            raise ValueError(f"{path}: checkpoint is for {blob['config']['net']} on {blob['event_shape']}")

        def restore(states):
            nets = []
            for s in states:
                net = self.build()
                net.load_state_dict(s)
                nets.append(net.to(self.device).eval())
            return nets

        return EDMEnsemble(restore(blob["nets"]), restore(blob["emas"]), int(blob["images_seen"]))
