"""Each latent channel's mean and standard deviation, one byte a channel, and the decode's projection onto them.

The local codes carry an image's layout but not its colour (a green curtain came back grey-blue):
PerCo's caption, which would say "a green curtain", cannot be read here (no text encoder). So the
sender measures each normalised latent channel's mean and standard deviation over the image, sends
them in 4 bits each (32 bytes for TAEF2's 32 channels), and the receiver shifts and scales every
DDIM step's clean estimate, channel by channel, to them (what it gives: the model card).

The ranges hold the normalised latents of the training photos (means -0.8..0.9, log2 standard
deviations -0.8..0.7, their spread per channel 0.23 and 0.15): a step of 0.16 in mean and of 12%
in standard deviation, with room on both sides for unusual images (values beyond are clamped).
"""

from __future__ import annotations

import numpy as np
import torch

MEAN_LOW, MEAN_HIGH = -1.2, 1.2
LOG2_STD_LOW, LOG2_STD_HIGH = -1.5, 1.0
LEVELS = 16  # 4 bits each


def _to_code(values: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return ((values - low) / (high - low) * (LEVELS - 1)).round().clamp(0, LEVELS - 1).to(torch.uint8)


def _from_code(codes: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + codes.float() / (LEVELS - 1) * (high - low)


def measure(latent: torch.Tensor) -> np.ndarray:
    """One byte per channel of a normalised latent (1 x C x h x w): mean code high, std code low."""
    flat = latent[0].float().flatten(1)
    mean = _to_code(flat.mean(dim=1), MEAN_LOW, MEAN_HIGH)
    std = _to_code(flat.std(dim=1, correction=0).clamp(min=1e-6).log2(), LOG2_STD_LOW, LOG2_STD_HIGH)
    return ((mean << 4) | std).cpu().numpy()


def projection(codes: np.ndarray, device):
    """`clean -> clean` with each channel's mean and standard deviation set to the sent ones."""
    codes = torch.from_numpy(np.asarray(codes, dtype=np.uint8)).to(device)
    mean = _from_code(codes >> 4, MEAN_LOW, MEAN_HIGH).view(1, -1, 1, 1)
    std = torch.exp2(_from_code(codes & 0x0F, LOG2_STD_LOW, LOG2_STD_HIGH)).view(1, -1, 1, 1)

    def project(clean: torch.Tensor) -> torch.Tensor:
        current = clean.float()
        centred = current - current.mean(dim=(2, 3), keepdim=True)
        scale = std / centred.square().mean(dim=(2, 3), keepdim=True).sqrt().clamp(min=1e-6)
        return (centred * scale + mean).to(clean.dtype)

    return project
