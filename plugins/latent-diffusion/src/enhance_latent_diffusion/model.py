"""The trained parts of the codec: a transform pair around the quantiser, gamma and the entropy model.

TAEF2's latent has 32 channels for every 8x8 pixels, eight times as many values as Stable
Diffusion's 4: scalar-quantising it directly (version 1 of this model) spent 0.1 bpp and
still left the latent error at 97% of its variance. So a learned analysis transform first
maps the latent to `code_channels` at half its resolution, where the hyperprior sees a
wider context for the same cost, and the synthesis maps
the dequantised code back to a latent, as learned image codecs do in pixel space.

gamma is a per-channel quantization step of the code, 2 ** (base[level, c] + offset_g / 4):
`base` is learned per rate level and channel, and `offset` (4 bits for each group of
`offset_group` channels, sent in the header) is predicted from the image's code, so the step
adapts to the content. The code divided by its
step is quantized and coded with a mean-scale hyperprior conditioned on the rate level.
"""

from __future__ import annotations

import torch
from torch import nn

from enhance.compute import autocast
from enhance.entropy import MeanScaleHyperprior
from enhance.entropy.hyperprior import round_straight_through
from enhance.latent.padding import pad_to_multiple

from .config import CodecConfig

OFFSET_LOW, OFFSET_HIGH = -8, 7  # 4-bit signed offsets, in quarter octaves
CODE_FACTOR = 2  # the code's downsampling against the latent


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), nn.Conv2d(width, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LatentTransform(nn.Module):
    """Latent (C at 1/8) to code (M at 1/16) and back."""

    def __init__(self, channels: int, code_channels: int, width: int):
        super().__init__()
        self.analysis = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), ResidualBlock(width), nn.GELU(),
            nn.Conv2d(width, code_channels, 4, stride=CODE_FACTOR, padding=1),
        )
        self.synthesis = nn.Sequential(
            nn.ConvTranspose2d(code_channels, width, 4, stride=CODE_FACTOR, padding=1), ResidualBlock(width), nn.GELU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    # bf16 where it is fast (half the time on CPU); the entropy model stays fp32 because the
    # receiver must compute exactly the sender's distributions.
    def encode(self, latent: torch.Tensor) -> torch.Tensor:
        with autocast(latent.device):
            return self.analysis(pad_to_multiple(latent, CODE_FACTOR)).float()

    def decode(self, code: torch.Tensor, height: int, width: int) -> torch.Tensor:
        with autocast(code.device):
            return self.synthesis(code)[..., :height, :width].float()


class StepPredictor(nn.Module):
    """log2 step offsets (one per channel group) of one image from its code and the rate level."""

    def __init__(self, channels: int, width: int, embed_dim: int, offsets: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.GELU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.GELU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * width + embed_dim, width), nn.GELU(), nn.Linear(width, offsets))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, code: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        features = self.features(code)
        pooled = torch.cat([features.mean(dim=(2, 3)), features.abs().amax(dim=(2, 3))], dim=1)
        # Quarter octaves, kept inside the 4-bit range.
        return 4 * torch.tanh(self.head(torch.cat([pooled, embedding], dim=1))) * 1.9


class LatentDiffusionCodecModel(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.levels, config.embed_dim)
        self.transform = LatentTransform(config.latent_channels, config.code_channels, config.transform_width)
        # Each level's step starts near its rate, one octave smaller per octave of lambda (what the
        # 64-channel model settled at); from a common start Adam needs thousands of steps to spread them.
        log_lambda = torch.tensor(config.lambdas).log2()
        start = (1.0 - (log_lambda - log_lambda[0])).unsqueeze(1).expand(config.levels, config.code_channels)
        self.base_log_step = nn.Parameter(start.clone())
        self.step_predictor = StepPredictor(config.code_channels, config.gamma_width, config.embed_dim, config.offset_count)
        self.hyperprior = MeanScaleHyperprior(
            config.code_channels, config.hyper_channels, config.hyper_width, condition_dim=config.embed_dim
        )

    def offsets(self, code: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """Quantized step offsets (integers OFFSET_LOW..OFFSET_HIGH, straight-through in training)."""
        raw = self.step_predictor(code, self.embedding(levels))
        return round_straight_through(raw).clamp(OFFSET_LOW, OFFSET_HIGH)

    def steps(self, levels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Quantization steps, N x M x 1 x 1."""
        return torch.exp2(self.base_log_step[levels] + offsets.repeat_interleave(self.config.offset_group, dim=1) / 4).unsqueeze(-1).unsqueeze(-1)

    def forward(self, latent: torch.Tensor, levels: torch.Tensor):
        """Training pass: (reconstructed latent, bits per latent position of the code and hyper-code)."""
        code = self.transform.encode(latent)
        step = self.steps(levels, self.offsets(code, levels))
        quantized, code_likelihood, hyper_likelihood = self.hyperprior(code / step, self.embedding(levels))
        reconstruction = self.transform.decode(quantized * step, *latent.shape[-2:])
        positions = latent.shape[-1] * latent.shape[-2]
        bits = -(torch.log2(code_likelihood).sum(dim=(1, 2, 3)) + torch.log2(hyper_likelihood).sum(dim=(1, 2, 3)))
        return reconstruction, bits / positions
