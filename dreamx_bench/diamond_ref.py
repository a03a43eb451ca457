"""A DIAMOND-size yardstick: the shape and cost of DIAMOND's Atari world model, randomly initialised.

DIAMOND (Alonso et al., 2024, "Diffusion for World Modeling: Visual Details Matter in Atari") generates
each 64x64 frame with a pixel-space diffusion UNet of about 4.4 M parameters: the 4 past frames stacked as
channels plus the noisy next frame go in, the noise level and the 4 past actions condition every residual
block through adaptive group norm, and 3 Euler denoising steps make one frame. This module rebuilds that
network and sampler (channels 64, 64, 64, 64; 2 residual blocks per level going down, 3 going up;
self-attention only in the middle) so that ``dreamx-bench`` can compare frames/s on the same machine.

The weights are random: it is a speed yardstick only, its frames are noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GROUP_SIZE = 32


@dataclass
class DiamondRefConfig:
    img_channels: int = 3
    num_steps_conditioning: int = 4  # past frames (and actions) the next frame is conditioned on
    cond_channels: int = 256
    depths: tuple[int, ...] = (2, 2, 2, 2)
    channels: tuple[int, ...] = (64, 64, 64, 64)
    num_actions: int = 18  # the full Atari action set
    sigma_data: float = 0.5
    sigma_offset_noise: float = 0.3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0


class AdaGroupNorm(nn.Module):
    """Group norm whose scale and shift come from the conditioning vector (noise level + actions)."""

    def __init__(self, channels: int, cond_channels: int) -> None:
        super().__init__()
        self.groups = max(1, channels // GROUP_SIZE)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return F.group_norm(x, self.groups, eps=1e-5) * (1 + scale) + shift


class SelfAttention2d(nn.Module):
    def __init__(self, channels: int, head_dim: int = 8) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(max(1, channels // GROUP_SIZE), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).view(n, 3 * self.heads, c // self.heads, h * w).transpose(2, 3)
        q, k, v = qkv.chunk(3, dim=1)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-1)
        return x + self.out((att @ v).transpose(2, 3).reshape(n, c, h, w))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, cond_channels: int, attn: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        self.norm1 = AdaGroupNorm(cin, cond_channels)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = AdaGroupNorm(cout, cond_channels)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.attn = SelfAttention2d(cout) if attn else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = self.conv2(F.silu(self.norm2(h, cond)))
        return self.attn(h + self.proj(x))


class DiamondRefUNet(nn.Module):
    """``forward(noisy_next [B,C,H,W], c_noise [B], past [B,T*C,H,W], actions [B,T] long) -> [B,C,H,W]``."""

    def __init__(self, cfg: DiamondRefConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiamondRefConfig()
        cc, ch = cfg.cond_channels, cfg.channels
        self.register_buffer("fourier", torch.randn(1, cc // 2))
        self.act_emb = nn.Embedding(cfg.num_actions, cc // cfg.num_steps_conditioning)
        self.cond_proj = nn.Sequential(nn.Linear(cc, cc), nn.SiLU(), nn.Linear(cc, cc))
        self.conv_in = nn.Conv2d((cfg.num_steps_conditioning + 1) * cfg.img_channels, ch[0], 3, padding=1)
        self.down, self.enc, self.up, self.dec = (nn.ModuleList() for _ in range(4))
        for i, n in enumerate(cfg.depths):
            c1, c2 = ch[max(0, i - 1)], ch[i]
            self.down.append(nn.Conv2d(c1, c1, 3, stride=2, padding=1) if i else nn.Identity())
            self.enc.append(nn.ModuleList(ResBlock(c1 if j == 0 else c2, c2, cc) for j in range(n)))
            # going up, each level takes one more block: it also consumes the level's downsampled input
            ins, outs = [2 * c2] * n + [c1 + c2], [c2] * n + [c1]
            self.dec.insert(0, nn.ModuleList(ResBlock(a, b, cc) for a, b in zip(ins, outs, strict=True)))
        self.up.append(nn.Identity())  # the middle blocks run at the deepest level's resolution
        self.up.extend(nn.Conv2d(c, c, 3, padding=1) for c in reversed(ch[:-1]))
        self.mid = nn.ModuleList(ResBlock(ch[-1], ch[-1], cc, attn=True) for _ in range(2))
        self.norm_out = nn.GroupNorm(max(1, ch[0] // GROUP_SIZE), ch[0])
        self.conv_out = nn.Conv2d(ch[0], cfg.img_channels, 3, padding=1)

    def forward(
        self, noisy_next: torch.Tensor, c_noise: torch.Tensor, past: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        f = 2 * math.pi * c_noise[:, None] @ self.fourier
        cond = self.cond_proj(torch.cat([f.cos(), f.sin()], dim=1) + self.act_emb(actions).flatten(1))
        x = self.conv_in(torch.cat([past, noisy_next], dim=1))
        skips = []
        for down, blocks in zip(self.down, self.enc, strict=True):
            x = down(x)
            level = [x]
            for block in blocks:
                x = block(x, cond)
                level.append(x)
            skips.append(level)
        for block in self.mid:
            x = block(x, cond)
        for i, (up, blocks) in enumerate(zip(self.up, self.dec, strict=True)):
            if i:
                x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            for block, skip in zip(blocks, reversed(skips.pop()), strict=True):
                x = block(torch.cat([x, skip], dim=1), cond)
        return self.conv_out(F.silu(self.norm_out(x)))


def karras_sigmas(steps: int, cfg: DiamondRefConfig) -> torch.Tensor:
    """``steps`` noise levels from ``sigma_max`` down to ``sigma_min`` (Karras et al. spacing), then 0."""
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    sigmas = (hi + torch.linspace(0, 1, steps) * (lo - hi)) ** cfg.rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


@torch.no_grad()
def sample_next_frame(
    net: DiamondRefUNet, past: torch.Tensor, actions: torch.Tensor, steps: int = 3, forward=None
) -> torch.Tensor:
    """One next frame ``[B,C,H,W]`` in [-1, 1] from ``past [B,T*C,H,W]`` and ``actions [B,T]``: ``steps``
    Euler steps of DIAMOND's EDM denoiser (``steps`` network passes, through ``forward`` if given: e.g.
    ``net`` compiled)."""
    cfg, forward = net.cfg, net if forward is None else forward
    x = torch.randn(past.shape[0], cfg.img_channels, *past.shape[2:], device=past.device)
    if past.is_contiguous(memory_format=torch.channels_last):  # the layout the caller runs the net in
        x = x.contiguous(memory_format=torch.channels_last)
    sigmas = karras_sigmas(steps, cfg).tolist()
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:], strict=True):
        s = math.sqrt(sigma**2 + cfg.sigma_offset_noise**2)
        c_in = 1 / math.sqrt(s**2 + cfg.sigma_data**2)
        c_skip = cfg.sigma_data**2 / (s**2 + cfg.sigma_data**2)
        c_noise = torch.full((x.shape[0],), math.log(s) / 4, device=x.device)
        out = forward(x * c_in, c_noise, past / cfg.sigma_data, actions)
        denoised = (out * s * math.sqrt(c_skip) + x * c_skip).clamp(-1, 1)
        x = x + (x - denoised) / sigma * (next_sigma - sigma)
    return x
