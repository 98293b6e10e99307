"""Latent diffusion priors: a diffusers UNet over an autoencoder's latents, with its noise schedule.

A prior bundle is a folder laid out as diffusers lays out a pipeline, one sub-folder per
component and an index naming them:

    prior.json                       format, version, autoencoder bundle, latent normalisation,
                                     prediction type, optional fixed conditioning
    unet/config.json                 a diffusers UNet2DModel or UNet2DConditionModel config
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json  a diffusers DDIMScheduler config
    conditioning.safetensors         only for text-conditioned UNets: the embedding of the
                                     empty prompt (Stable Diffusion 2.1 run unconditionally)

Our own prior (trained by `enhance train prior`) is a UNet2DModel over TAEF2 latents; a
foundation model such as Stable Diffusion 2.1 loads the same way through weights.lock.
Weights are loaded strictly: a missing or unexpected tensor is an error.
"""

from __future__ import annotations

from .prior import LatentPrior, PriorConfig, load_prior

__all__ = ["LatentPrior", "PriorConfig", "load_prior"]
