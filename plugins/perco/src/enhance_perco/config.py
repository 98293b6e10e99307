"""The PerCo bundle's index (`perco.json`): its rate levels, codes, guidance and step counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from enhance.bundle_config import BundleConfig
from enhance.errors import WeightsError

GRID_FACTORS = (1, 2, 4, 8)  # of the latent, so 1/8, 1/16, 1/32, 1/64 of the image


@dataclass
class PercoConfig(BundleConfig):
    """`levels[k] = [grid factor, codebook size]`, lowest rate first (users count levels from 1)."""

    FORMAT = "enhance.perco"
    VERSION = 2
    WHAT = "PerCo"

    autoencoder: str = "taef2"
    # A text-encoder bundle (enhance.priors.text_encoder) whose output the decoder cross-attends
    # to, as SD 2.1 does; "" for a decoder without text cross-attention (captions then travel unread).
    text_encoder: str = ""
    levels: list[list[int]] = field(default_factory=lambda: [[8, 256], [8, 1024], [4, 256], [4, 1024], [2, 256], [2, 8192], [1, 256]])
    latent_channels: int = 32
    code_dim: int = 8
    trunk_width: int = 64
    global_codes: int = 2
    global_codebook: int = 256
    guidance: float = 1.0
    # The reference's step counts: 20 below 0.05 bpp, 5 above.
    steps_low_rate: int = 20
    steps_high_rate: int = 5
    step_threshold_bpp: float = 0.05
    # DDIM's stochasticity: 1 draws fresh noise at every step (DDPM-like). A decoder trained as
    # briefly as ours strays on the deterministic path (eta 0) and paints collages; the fresh
    # noise pulls each step back toward the states it was trained on (measured: the model card).
    eta: float = 1.0

    def nominal_bpp(self, level: int) -> float:
        factor, size = self.levels[level]
        return math.log2(size) / (8 * factor) ** 2

    def default_steps(self, level: int) -> int:
        return self.steps_low_rate if self.nominal_bpp(level) < self.step_threshold_bpp else self.steps_high_rate

    def check(self, where: str) -> None:
        if not 1 <= len(self.levels) <= 15:
            raise WeightsError(f"{where}: 1 to 15 levels")
        for level in self.levels:
            if not (isinstance(level, list) and len(level) == 2 and level[0] in GRID_FACTORS and type(level[1]) is int):
                raise WeightsError(f"{where}: each level is [grid factor in {GRID_FACTORS}, codebook size]")
            if level[1] < 2 or level[1] > 1 << 16 or level[1] & (level[1] - 1):
                raise WeightsError(f"{where}: codebook sizes are powers of two from 2 to 65536")
        if self.global_codebook < 2 or self.global_codebook > 1 << 16 or self.global_codebook & (self.global_codebook - 1):
            raise WeightsError(f"{where}: global_codebook is a power of two from 2 to 65536")
        for key in ("latent_channels", "code_dim", "trunk_width"):
            if not 1 <= getattr(self, key) <= 1024:
                raise WeightsError(f"{where}: {key} must be from 1 to 1024")
        if not 0 <= self.global_codes <= 16:
            raise WeightsError(f"{where}: global_codes must be from 0 to 16")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= 20):
            raise WeightsError(f"{where}: guidance must be from 0 to 20")
        if not (math.isfinite(self.eta) and 0 <= self.eta <= 1):
            raise WeightsError(f"{where}: eta must be from 0 to 1")
        if not (1 <= self.steps_low_rate <= 1000 and 1 <= self.steps_high_rate <= 1000):
            raise WeightsError(f"{where}: step counts must be from 1 to 1000")
