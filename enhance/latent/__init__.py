"""Latent spaces: autoencoders that map images to the latents the latent codecs and priors work on.

`LatentAutoencoder` is the protocol every latent codec, prior and trainer uses. Tensors are
float, images NCHW in [0, 1], latents NC(H/f)(W/f); `encode_image`/`decode_latent` take and
give uint8 HxWx3 arrays of any size (padded to the factor, cropped back).

Adapters: `TAEF2` (shipped, bundle `taef2`) and `DiffusersVAE` (any diffusers AutoencoderKL
bundle listed in weights.lock).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .padding import pad_to_multiple


@runtime_checkable
class LatentAutoencoder(Protocol):
    """An image autoencoder; `factor` is the spatial downsampling, `channels` the latent depth."""

    name: str
    channels: int
    factor: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """NCHW in [0, 1], H and W multiples of `factor` -> N x channels x H/f x W/f."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of `encode`: images NCHW in [0, 1]."""
        ...


def image_to_tensor(image: np.ndarray, device="cpu") -> torch.Tensor:
    """uint8 HxWx3 -> 1x3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1)[None].float() / 255.0


def tensor_to_image(images: torch.Tensor) -> np.ndarray:
    """1x3xHxW in [0, 1] -> uint8 HxWx3 (rounded, clipped)."""
    pixels = images[0].detach().float().clamp(0, 1).mul(255).round().byte()
    return pixels.permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def encode_image(autoencoder: LatentAutoencoder, image: np.ndarray, device="cpu") -> torch.Tensor:
    """The latent of a uint8 HxWx3 image of any size (edge-padded up to the factor)."""
    padded = pad_to_multiple(image_to_tensor(image, device), autoencoder.factor)
    return autoencoder.encode(padded)


@torch.no_grad()
def decode_latent(autoencoder: LatentAutoencoder, latent: torch.Tensor, height: int, width: int) -> np.ndarray:
    """The uint8 HxWx3 image of `latent`, cropped to the original `height` x `width`."""
    return tensor_to_image(autoencoder.decode(latent)[..., :height, :width])


def load_autoencoder(name: str = "taef2", *, device="cpu", dtype=torch.float32) -> LatentAutoencoder:
    """A latent autoencoder by bundle name: `taef2`, or any diffusers AutoencoderKL bundle in weights.lock."""
    from .. import weights

    directory = weights.resolve_bundle(name)
    return autoencoder_from_directory(directory, device=device, dtype=dtype)


__all__ = ["LatentAutoencoder", "autoencoder_from_directory", "decode_latent", "encode_image", "image_to_tensor", "load_autoencoder", "tensor_to_image"]


def autoencoder_from_directory(directory, *, device="cpu", dtype=torch.float32) -> LatentAutoencoder:
    """A latent autoencoder from a bundle folder, its kind read from `config.json`'s `_class_name`."""
    import json
    from pathlib import Path

    from ..errors import WeightsError

    directory = Path(directory)
    try:
        kind = json.loads((directory / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError) as error:
        raise WeightsError(f"{directory / 'config.json'}: cannot read ({error})") from None
    if kind == "TAEF2":
        from .taef2 import TAEF2

        return TAEF2.from_pretrained(directory, device=device, dtype=dtype)
    if kind == "AutoencoderKL":
        from .diffusers_vae import DiffusersVAE

        return DiffusersVAE.from_pretrained(directory, device=device, dtype=dtype)
    raise WeightsError(f"{directory / 'config.json'}: unknown autoencoder {kind!r} (TAEF2 or AutoencoderKL)")
