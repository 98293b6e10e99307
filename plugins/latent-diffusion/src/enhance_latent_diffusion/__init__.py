"""The foundation latent-diffusion codec of Relic et al. (2024), "Lossy Image Compression with
Foundation Diffusion Models", as an `enhance.full_codecs` plugin over enhance's latent space,
latent prior and entropy coding."""

from .codec import LatentDiffusionCodec

__all__ = ["LatentDiffusionCodec"]
