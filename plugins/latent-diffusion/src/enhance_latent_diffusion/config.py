"""The codec bundle's index (`codec.json`): which latent space and prior it runs on, and its rates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from enhance.bundle_config import BundleConfig
from enhance.errors import WeightsError


@dataclass
class CodecConfig(BundleConfig):
    """`lambdas[k]` weighs latent MSE against bits per pixel at rate level k (1-based for users)."""

    FORMAT = "enhance.latent-diffusion-codec"
    VERSION = 3  # 3 added fresh_noise and anchor_pool
    WHAT = "codec"

    autoencoder: str = "taef2"
    prior: str = "prior-taef2"
    lambdas: list[float] = field(default_factory=lambda: [round(0.06 * 2 ** (0.8 * k), 4) for k in range(8)])
    latent_channels: int = 32
    code_channels: int = 64
    transform_width: int = 128
    hyper_channels: int = 32
    hyper_width: int = 128
    embed_dim: int = 16
    gamma_width: int = 64
    offset_group: int = 1  # code channels sharing one 4-bit step offset in the header
    # The receiver denoises from the timestep whose noise matches `noise_scale` times the
    # quantization error the sender measured; `eta` is DDIM's stochasticity.
    noise_scale: float = 1.0
    default_steps: int = 4
    eta: float = 0.0
    # The quantization error left by the synthesis transform is blur, not the white noise a
    # prior is trained to remove: with `fresh_noise` the receiver adds that timestep's noise
    # to the dequantised latent (the paper takes the error itself as the noise). With
    # `anchor_pool` > 0 every step's clean estimate keeps the dequantised latent's means over
    # anchor_pool x anchor_pool latent blocks, so the prior adds detail, not a new layout.
    fresh_noise: bool = True
    anchor_pool: int = 2

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    @property
    def offset_count(self) -> int:
        return self.code_channels // self.offset_group

    def check(self, where: str) -> None:
        if not 2 <= self.levels <= 16 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.lambdas):
            raise WeightsError(f"{where}: lambdas must be 2 to 16 positive numbers")
        for key in ("latent_channels", "code_channels", "transform_width", "hyper_channels", "hyper_width", "embed_dim", "gamma_width"):
            if not 1 <= getattr(self, key) <= 1024:
                raise WeightsError(f"{where}: {key} must be from 1 to 1024")
        if not 1 <= self.offset_group <= self.code_channels or self.code_channels % (2 * self.offset_group):
            raise WeightsError(f"{where}: code_channels must be a multiple of twice offset_group (step offsets are packed two a byte)")
        if not (math.isfinite(self.noise_scale) and 0 < self.noise_scale <= 10 and 0 <= self.eta <= 1):
            raise WeightsError(f"{where}: noise_scale must be in (0, 10] and eta in [0, 1]")
        if not 0 <= self.default_steps <= 100:
            raise WeightsError(f"{where}: default_steps must be from 0 to 100")
        if not 0 <= self.anchor_pool <= 16:
            raise WeightsError(f"{where}: anchor_pool must be from 0 (off) to 16")
