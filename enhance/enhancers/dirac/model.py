"""The DIRAC residual denoiser: a small UNet that works below full resolution.

Design for a 2-core CPU: the input is pixel-unshuffled so every convolution runs at
half resolution or less, blocks have no normalisation layers (GroupNorm is slow in
bf16/channels-last on CPU), skips are added rather than concatenated, and all
convolutions are plain 3x3 so oneDNN's bf16 AMX kernels carry the load.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DiracUNetConfig:
    """Constructor arguments of :class:`DiracUNet`, saved beside its weights."""

    image_channels: int = 3
    unshuffle: int = 2
    channels: tuple[int, ...] = (64, 128, 192)
    blocks: tuple[int, ...] = (2, 2, 2)
    mid_blocks: int = 2
    embed_dim: int = 256
    rate_conditioned: bool = True
    # Hidden channels of the full-resolution refinement stage; 0 leaves it out.
    refine_channels: int = 0
    # Residual blocks inside that stage: texture at single-pixel scale needs depth where the
    # pixels are, not only behind the UNet's 2x2 shuffle.
    refine_blocks: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "DiracUNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        values = dict(data)
        for key in ("channels", "blocks"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["blocks"] = list(self.blocks)
        return data

    def validate(self) -> None:
        if len(self.channels) != len(self.blocks) or not self.channels:
            raise ValueError("channels and blocks must be non-empty and of equal length")
        if self.unshuffle < 1 or self.embed_dim < 2 or self.embed_dim % 2:
            raise ValueError("unshuffle must be >= 1 and embed_dim even")
        if self.refine_channels < 0 or self.refine_blocks < 0:
            raise ValueError("refine_channels and refine_blocks must be >= 0")
        if self.refine_blocks and not self.refine_channels:
            raise ValueError("refine_blocks needs a refinement stage (refine_channels > 0)")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return self.unshuffle * 2 ** (len(self.channels) - 1)


def sinusoidal_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=values.device) / half)
    angles = values.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * channels)
        # Zero-initialised output makes every block start as the identity, which keeps
        # a deep normalisation-free stack stable from the first step.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        h = self.conv1(F.silu(x))
        h = h * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return x + h


class FullResolutionRefiner(nn.Module):
    """A small 3x3 stage at full resolution, after the UNet's pixel shuffle.

    Everything else runs at half resolution or less, so single-pixel structure can only
    come out through the shuffle, which leaves a 2x2-periodic pattern; and near the end of
    sampling the answer is mostly the noisy residual itself, which this stage sees directly.
    Its output layer starts at zero, so adding it to a trained UNet changes nothing at first.
    """

    def __init__(self, image_channels: int, hidden: int, embed_dim: int, blocks: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(3 * image_channels, hidden, 3, padding=1)
        self.film = nn.Linear(embed_dim, 2 * hidden)
        self.blocks = nn.ModuleList(ResBlock(hidden, embed_dim) for _ in range(blocks))
        self.conv2 = nn.Conv2d(hidden, image_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, prediction, noisy_residual, decoded, embedding):
        h = self.conv1(torch.cat([prediction, noisy_residual, decoded], dim=1))
        scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
        h = h * (1 + scale) + shift
        for block in self.blocks:
            h = block(h, embedding)
        return prediction + self.conv2(F.silu(h))


class DiracUNet(nn.Module):
    """Predicts the scaled residual x - x_hat from (noisy residual, x_hat, t, rate)."""

    def __init__(self, config: DiracUNetConfig | None = None):
        super().__init__()
        self.config = config or DiracUNetConfig()
        self.config.validate()
        cfg = self.config
        s2 = cfg.unshuffle**2
        embed = cfg.embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(embed, embed), nn.SiLU(), nn.Linear(embed, embed))
        self.rate_mlp = (
            nn.Sequential(nn.Linear(embed, embed), nn.SiLU(), nn.Linear(embed, embed))
            if cfg.rate_conditioned
            else None
        )
        self.stem = nn.Conv2d(2 * cfg.image_channels * s2, cfg.channels[0], 3, padding=1)
        self.encoder = nn.ModuleList(
            nn.ModuleList(ResBlock(c, embed) for _ in range(n)) for c, n in zip(cfg.channels, cfg.blocks)
        )
        self.down = nn.ModuleList(
            nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(cfg.channels[:-1], cfg.channels[1:])
        )
        self.mid = nn.ModuleList(ResBlock(cfg.channels[-1], embed) for _ in range(cfg.mid_blocks))
        self.up = nn.ModuleList(
            nn.Conv2d(b, 4 * a, 1) for a, b in zip(cfg.channels[:-1], cfg.channels[1:])
        )
        self.decoder = nn.ModuleList(
            nn.ModuleList(ResBlock(c, embed) for _ in range(n)) for c, n in zip(cfg.channels, cfg.blocks)
        )
        self.head = nn.Conv2d(cfg.channels[0], cfg.image_channels * s2, 3, padding=1)
        self.refiner = (
            FullResolutionRefiner(cfg.image_channels, cfg.refine_channels, embed, cfg.refine_blocks) if cfg.refine_channels else None
        )

    def embed(self, timesteps: torch.Tensor, rate: torch.Tensor | None) -> torch.Tensor:
        dim = self.config.embed_dim
        dtype = self.stem.weight.dtype
        embedding = self.time_mlp(sinusoidal_embedding(timesteps, dim).to(dtype))
        if self.rate_mlp is not None:
            if rate is None:
                raise ValueError("this model is rate-conditioned: pass rate")
            # Rates arrive normalised to [0, 1]; spread them over the sinusoid's range.
            embedding = embedding + self.rate_mlp(sinusoidal_embedding(rate * 1000.0, dim).to(dtype))
        return embedding

    def forward(
        self,
        noisy_residual: torch.Tensor,
        decoded: torch.Tensor,
        timesteps: torch.Tensor,
        rate: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        height, width = decoded.shape[-2:]
        if height % cfg.size_multiple or width % cfg.size_multiple:
            raise ValueError(f"input size {width}x{height} is not a multiple of {cfg.size_multiple}")
        embedding = self.embed(timesteps, rate)
        x = torch.cat([noisy_residual, decoded], dim=1)
        x = self.stem(F.pixel_unshuffle(x, cfg.unshuffle))
        skips = []
        for level, blocks in enumerate(self.encoder):
            for block in blocks:
                x = block(x, embedding)
            if level < len(self.down):
                skips.append(x)
                x = self.down[level](F.silu(x))
        for block in self.mid:
            x = block(x, embedding)
        for level in reversed(range(len(self.decoder))):
            if level < len(self.up):
                x = F.pixel_shuffle(self.up[level](F.silu(x)), 2) + skips.pop()
            for block in self.decoder[level]:
                x = block(x, embedding)
        prediction = F.pixel_shuffle(self.head(F.silu(x)), cfg.unshuffle)
        if self.refiner is not None:
            prediction = self.refiner(prediction, noisy_residual, decoded, embedding)
        return prediction
