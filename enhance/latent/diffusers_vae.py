"""Any diffusers `AutoencoderKL` (Stable Diffusion's VAE, for example) as a `LatentAutoencoder`.

The bundle is a folder with diffusers' `config.json` and `diffusion_pytorch_model.safetensors`,
listed in weights.lock; its weights load strictly. Latents are the posterior mean times the
config's `scaling_factor` (what SD's UNet was trained on); images go in and out in [0, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError


class DiffusersVAE(nn.Module):
    name = "diffusers-vae"

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae
        self.channels = int(vae.config.latent_channels)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling = float(getattr(vae.config, "scaling_factor", 1.0))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode(images.to(dtype) * 2 - 1).latent_dist
        return posterior.mean.float() * self.scaling

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = next(self.vae.parameters()).dtype
        images = self.vae.decode(latents.to(dtype) / self.scaling).sample
        return ((images.float() + 1) / 2).clamp(0, 1)

    @classmethod
    def from_pretrained(cls, directory: Path | str, *, device="cpu", dtype=torch.float32) -> "DiffusersVAE":
        from diffusers import AutoencoderKL

        from ..weights import load_file_exact

        directory = Path(directory)
        try:
            config = json.loads((directory / "config.json").read_text())
            config.pop("_class_name", None)
            vae = AutoencoderKL.from_config(config)
        except (OSError, ValueError, TypeError) as error:
            raise WeightsError(f"{directory / 'config.json'}: not a diffusers AutoencoderKL config ({error})") from None
        load_file_exact(vae, directory / "diffusion_pytorch_model.safetensors")
        return cls(vae).to(device=device, dtype=dtype).eval().requires_grad_(False)
