"""DIRAC: residual diffusion that restores detail a base codec removed.

`DiracEnhancer` is the array-level enhancer (uint8 in, uint8 out, any size through
tiling); `DiracPipeline` is the tensor-level sampler; `DiracUNet` the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...image import checked_rgb
from .. import dirac_identity
from ...tiling import Tile, apply_tiled, noise_field
from .config import BundleError, DiracConfig, RateSpec, Thresholds
from .model import DiracUNet, DiracUNetConfig
from .pipeline import DiracPipeline
from .scheduler import LateStartDDIM, ScheduleConfig

__all__ = [
    "BundleError",
    "DiracConfig",
    "DiracEnhancer",
    "DiracPipeline",
    "DiracUNet",
    "DiracUNetConfig",
    "LateStartDDIM",
    "RateSpec",
    "ScheduleConfig",
    "Thresholds",
]

DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 64


class DiracEnhancer:
    """`enhance(decoded, *, rate, steps, seed) -> image` for uint8 HxWx3 arrays of any size."""

    name = "dirac"

    def __init__(self, pipeline: DiracPipeline, *, identity: str, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
        self.pipeline = pipeline
        self.identity = identity
        self.tile = tile
        self.overlap = overlap

    @classmethod
    def from_directory(cls, directory: Path, *, device=None, dtype=None, tile: int | None = None) -> "DiracEnhancer":
        directory = Path(directory)
        pipeline = DiracPipeline.from_directory(directory, device=device, dtype=dtype)
        # The cache key must change with anything that changes the output.
        identity = dirac_identity(directory, pipeline.device.type, str(pipeline.dtype))
        return cls(pipeline, identity=identity, tile=tile or DEFAULT_TILE)

    @property
    def config(self) -> DiracConfig:
        return self.pipeline.config

    @property
    def codec(self) -> str:
        return self.config.codec

    @property
    def default_steps(self) -> int:
        return self.config.default_steps

    @property
    def step_range(self) -> tuple[int, int]:
        """The step counts this model samples with: 1 up to its schedule's length."""
        return 1, self.config.schedule.schedule_steps

    def enhance(self, decoded: np.ndarray, *, rate: float | None, steps: int | None = None, seed: int = 0) -> np.ndarray:
        steps = steps if steps is not None else self.default_steps
        return self.enhance_stops(decoded, rate=rate, stops=[steps], seed=seed)[steps]

    def enhance_stops(self, decoded: np.ndarray, *, rate: float | None, stops: list[int], seed: int = 0) -> dict[int, np.ndarray]:
        """Outputs after each of `stops` steps of one sampling trajectory, from one run."""
        checked_rgb(decoded, "decoded", error=ValueError)
        stops = sorted(set(stops))
        for steps in stops:
            self.pipeline.check_steps(steps)
        pipeline = self.pipeline

        def process(pixels: np.ndarray, tile: Tile) -> np.ndarray:
            # A copy: tiles are read-only views, which torch cannot wrap.
            x_hat = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
            residuals = pipeline.residuals(x_hat, noise_field(seed, tile), rate=rate, stops=stops)
            x_hat = x_hat.to(residuals[0].device)
            enhanced = [(x_hat + r).clamp(-1, 1).add(1).mul(127.5)[0].permute(1, 2, 0) for r in residuals]
            return torch.cat(enhanced, dim=2).cpu().numpy()

        overlap = min(self.overlap, self.tile // 2 // 16 * 16)
        blended = apply_tiled(decoded, process, self.tile, overlap)
        outputs = [blended[..., 3 * i : 3 * i + 3] for i in range(len(stops))]
        if is_grey(decoded):
            # A grey image has no colour to restore; the model, trained on colour photos,
            # predicts slightly different residuals per channel, which would show as colour noise.
            outputs = [np.repeat(output.mean(axis=2, keepdims=True), 3, axis=2) for output in outputs]
        return {steps: np.clip(np.rint(output), 0, 255).astype(np.uint8) for steps, output in zip(stops, outputs)}


def is_grey(pixels: np.ndarray) -> bool:
    """Whether an HxWx3 image has equal channels everywhere (a greyscale image decoded to RGB)."""
    return bool(np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2]))
