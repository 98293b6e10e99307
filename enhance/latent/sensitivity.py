"""How much each latent channel moves the decoded pixels: weights for latent-space distortion.

A latent codec trained on plain MSE of normalised latents spends its bits evenly over the
channels, but the channels of TAEF2's latent (normalised by the prior's statistics) differ by
two orders of magnitude in how far a change moves the decoded image: measured on training
photos, one channel moves the pixels 10x the mean, a dozen others under 0.2x. Weighting the
latent MSE by these numbers makes it a first-order stand-in for pixel MSE (the diagonal of the
decoder's Gauss-Newton matrix), without running the decoder in the training loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PERTURBATION = 0.3  # in normalised units: small enough to stay near-linear, large enough to beat bf16 noise


@torch.no_grad()
def pixel_sensitivity(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """Per channel of `latents` (N x C x h x w, normalised): the pixel MSE a unit of latent MSE in
    that channel causes, through `decode` (normalised latent -> image)."""
    generator = torch.Generator().manual_seed(seed)
    reference = decode(latents).float()
    sensitivity = torch.empty(latents.shape[1])
    for channel in range(latents.shape[1]):
        noise = PERTURBATION * torch.randn(latents[:, channel].shape, generator=generator).to(latents)
        perturbed = latents.clone()
        perturbed[:, channel] += noise
        sensitivity[channel] = (decode(perturbed).float() - reference).pow(2).mean() / noise.pow(2).mean()
    return sensitivity

