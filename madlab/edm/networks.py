"""A U-Net F_θ(x, c_noise) of configurable size, in the style of DDPM++ (Song et al. 2021).

Residual blocks (GroupNorm, SiLU, 3×3 convolutions, noise embedding as a per-channel scale and
shift), self-attention at chosen resolutions, skip connections from encoder to decoder, residual
sums scaled by sqrt(1/2). `NETWORKS` names ready-made sizes: `ddpmpp-cifar10` is the CIFAR-10
DDPM++ configuration of Karras et al. 2022 (128 channels, multipliers 2-2-2, 4 blocks per
resolution, attention at 16×16, dropout 0.13; about 61 M parameters here, 56 M in EDM); `medium`
suits a few GPU minutes on small images; `small` is a CPU demo; `tiny` is for CPU tests.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    model_channels: int = 128                                  # base channel count C
    channel_mult: tuple[int, ...] = (2, 2, 2)                  # channels C * mult per resolution level
    num_blocks: int = 4                                        # residual blocks per level
    attn_resolutions: tuple[int, ...] = (16,)                  # resolutions with self-attention
    dropout: float = 0.13                                      # dropout inside residual blocks
    emb_mult: int = 4                                          # embedding width = C * emb_mult

    def to_dict(self) -> dict:
        return asdict(self)


NETWORKS = {
    "tiny": UNetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(),
                       dropout=0.0, emb_mult=2),
    "small": UNetConfig(model_channels=32, channel_mult=(1, 2), num_blocks=2, attn_resolutions=(4,),
                        dropout=0.0),
    "medium": UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_blocks=2,
                         attn_resolutions=(4,), dropout=0.1),
    "ddpmpp-cifar10": UNetConfig(),
}


def groups(channels: int) -> int:
    return math.gcd(32, max(1, channels // 4)) if channels >= 4 else 1


def positional_embedding(c_noise: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of the scalar noise input c_noise [B]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c_noise.device) / half)
    angle = c_noise.float().unsqueeze(1) * freqs
    return torch.cat([angle.cos(), angle.sin()], 1)


class ResBlock(nn.Module):
    """x -> (x' + skip(x)) / sqrt(2), x' = conv(drop(act(norm(conv(act(norm(x))) * (1 + scale) + shift))))."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float, attention: bool):
        super().__init__()
        self.norm0 = nn.GroupNorm(groups(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb, 2 * cout)
        self.norm1 = nn.GroupNorm(groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv1.weight)  # each block starts as (close to) the identity path
        nn.init.zeros_(self.conv1.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.attention = Attention(cout) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        x = (h + self.skip(x)) * math.sqrt(0.5)
        if self.attention is not None:
            x = self.attention(x)
        return x


class Attention(nn.Module):
    """Single-head self-attention over pixels with a residual sum scaled by sqrt(1/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return (x + self.proj(h.transpose(1, 2).reshape(B, C, H, W))) * math.sqrt(0.5)


class UNet(nn.Module):
    """F_θ(x [B, C_img, H, W], c_noise [B]) -> [B, C_img, H, W]."""

    def __init__(self, resolution: int, channels: int, config: UNetConfig):
        super().__init__()
        c = config
        self.config, self.resolution = c, resolution
        self.emb_in = c.model_channels
        emb = c.model_channels * c.emb_mult
        self.map = nn.Sequential(nn.Linear(self.emb_in, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.conv_in = nn.Conv2d(channels, c.model_channels * c.channel_mult[0], 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        skips, res, cin = [self.conv_in.out_channels], resolution, self.conv_in.out_channels
        for level, mult in enumerate(c.channel_mult):
            if level > 0:
                self.down.append(Resample("down", cin, emb, c.dropout))
                res //= 2
                skips.append(cin)
            for _ in range(c.num_blocks):
                self.down.append(ResBlock(cin, c.model_channels * mult, emb, c.dropout, res in c.attn_resolutions))
                cin = c.model_channels * mult
                skips.append(cin)
        self.mid = nn.ModuleList([ResBlock(cin, cin, emb, c.dropout, True), ResBlock(cin, cin, emb, c.dropout, False)])
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for _ in range(c.num_blocks + 1):
                cout = c.model_channels * mult
                self.up.append(ResBlock(cin + skips.pop(), cout, emb, c.dropout, res in c.attn_resolutions))
                cin = cout
            if level > 0:
                self.up.append(Resample("up", cin, emb, c.dropout))
                res *= 2
        self.norm_out = nn.GroupNorm(groups(cin), cin)
        self.conv_out = nn.Conv2d(cin, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.map(positional_embedding(c_noise, self.emb_in)).to(x.dtype)
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, emb)
            hs.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            h = block(h, emb) if isinstance(block, Resample) else block(torch.cat([h, hs.pop()], 1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


class Resample(nn.Module):
    """Halve (average pooling) or double (nearest) the resolution, then a residual block."""

    def __init__(self, mode: str, channels: int, emb: int, dropout: float):
        super().__init__()
        self.mode = mode
        self.block = ResBlock(channels, channels, emb, dropout, False)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 2) if self.mode == "down" else F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.block(x, emb)


def make_unet(name: str, resolution: int, channels: int) -> UNet:
    """The named U-Net for images of `resolution`² pixels with `channels` colour channels."""
    try:
        config = NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}") from None
    levels = len(config.channel_mult)
    if resolution % (2 ** (levels - 1)):
        raise ValueError(f"network {name!r} halves the resolution {levels - 1} times; "
                         f"{resolution}×{resolution} images do not divide")
    return UNet(resolution, channels, config)
