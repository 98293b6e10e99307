"""The trained parts of the codec: the quantization transform's predictor (gamma) and the entropy model.

gamma is a per-channel quantization step, 2 ** (base[level, c] + offset_c / 4): `base` is learned
per rate level, and `offset` (4 bits a channel, sent in the header) is predicted from the image's
latent, so the step adapts to the content. The latent divided by its step is quantized and coded
with a mean-scale hyperprior conditioned on the rate level.
"""

from __future__ import annotations

import torch
from torch import nn

from enhance.entropy import MeanScaleHyperprior
from enhance.entropy.hyperprior import round_straight_through

from .config import CodecConfig

OFFSET_LOW, OFFSET_HIGH = -8, 7  # 4-bit signed offsets, in quarter octaves


class StepPredictor(nn.Module):
    """Per-channel log2 step offsets of one image from its latent and the rate level."""

    def __init__(self, channels: int, width: int, embed_dim: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width + embed_dim, width), nn.GELU(), nn.Linear(width, channels))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, latent: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        features = self.features(latent)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.abs().amax(dim=(2, 3))], dim=1)
        # Quarter octaves, kept inside the 4-bit range.
        return 4 * torch.tanh(self.head(torch.cat([pooled, embedding], dim=1))) * 1.9


class LatentDiffusionCodecModel(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.levels, config.embed_dim)
        # Steps from 16 (lowest level) down to 1 (highest), so each level starts near its rate;
        # from a common start Adam would need thousands of steps to spread them apart.
        start = torch.linspace(4.0, 0.0, config.levels).unsqueeze(1).expand(config.levels, config.latent_channels)
        self.base_log_step = nn.Parameter(start.clone())
        self.step_predictor = StepPredictor(config.latent_channels, config.gamma_width, config.embed_dim)
        self.hyperprior = MeanScaleHyperprior(
            config.latent_channels, config.hyper_channels, config.hyper_width, condition_dim=config.embed_dim
        )

    def offsets(self, latent: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Quantized step offsets (integers OFFSET_LOW..OFFSET_HIGH, straight-through in training)."""
        raw = self.step_predictor(latent, self.embedding(levels))
        return round_straight_through(raw).clamp(OFFSET_LOW, OFFSET_HIGH)

    def steps(self, levels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Quantization steps, N x C x 1 x 1."""
        return torch.exp2(self.base_log_step[levels] + offsets / 4).unsqueeze(-1).unsqueeze(-1)

    def forward(self, latent: torch.Tensor, levels: torch.Tensor):
        """Training pass: (reconstructed latent, bits per latent position of the latent and hyper-latent)."""
        step = self.steps(levels, self.offsets(latent, levels))
        quantized, latent_likelihood, hyper_likelihood = self.hyperprior(latent / step, self.embedding(levels))
        positions = latent.shape[-1] * latent.shape[-2]
        bits = -(torch.log2(latent_likelihood).sum(dim=(1, 2, 3)) + torch.log2(hyper_likelihood).sum(dim=(1, 2, 3)))
        return quantized * step, bits / positions
