"""Latents of the training photos, computed once and cached, and random crops drawn from them.

The autoencoder is frozen while latent models train, so each photo and its mirror image are
encoded once (`cache_latents`, resumable: finished files are kept) and training reads
fp16 latents from disk instead of running the encoder every step. Rotations by 90 degrees
are not cached: the latent of a rotated image is not the rotated latent.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch

from ..latent import LatentAutoencoder, encode_image
from .data import every_nth_per_folder, find_images, load_rgb

VERSION = 1


def cache_name(image: Path, root: Path) -> str:
    relative = image.relative_to(root) if image.is_relative_to(root) else Path(image.name)
    return str(relative.with_suffix("")).replace("/", "__") + ".safetensors"


def cache_window(image: np.ndarray, max_side: int | None, key: str) -> np.ndarray:
    """A max_side x max_side window of a larger image, placed by a hash of `key` on the 8-pixel grid."""
    if max_side is None or max(image.shape[:2]) <= max_side:
        return image
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    y = int(rng.integers(0, max(0, image.shape[0] - max_side) // 8 + 1)) * 8
    x = int(rng.integers(0, max(0, image.shape[1] - max_side) // 8 + 1)) * 8
    return image[y : y + max_side, x : x + max_side]


def cache_latents(
    autoencoder: LatentAutoencoder, roots: list[Path], out: Path, *, max_side: int | None = None, every: int = 1, log=print
) -> list[Path]:
    """Encodes every image under `roots` (or every `every`-th of each folder) and its left-right
    mirror into `out`; returns the cache files.

    With `max_side`, larger photos contribute one window of that size (encoding every pixel of
    the big photos costs the 2-core CPU most of an hour, for crops a budgeted run never draws)."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for root in roots:
        for index, image_path in enumerate(every_nth_per_folder(find_images([Path(root)]), every)):
            target = out / cache_name(image_path, Path(root))
            files.append(target)
            if target.exists():
                continue
            image = cache_window(load_rgb(image_path), max_side, target.name)
            tensors = {
                "latent": encode_image(autoencoder, image)[0].half(),
                "latent_mirrored": encode_image(autoencoder, np.ascontiguousarray(image[:, ::-1]))[0].half(),
            }
            metadata = {"version": str(VERSION), "autoencoder": autoencoder.name, "source": str(image_path)}
            temporary = target.with_suffix(".tmp")
            save_file(tensors, str(temporary), metadata=metadata)
            temporary.rename(target)
            log(f"{index + 1}: {image_path.name} -> {tuple(tensors['latent'].shape)}")
    return files


class LatentCropSampler:
    """Holds cached latents in memory and draws random crops (with their mirrors) as float batches."""

    def __init__(self, files: list[Path], crop: int, seed: int = 0):
        from safetensors.torch import load_file

        self.crop = crop
        self.latents: list[torch.Tensor] = []
        for path in files:
            tensors = load_file(str(path))
            for key in ("latent", "latent_mirrored"):
                latent = tensors[key]
                if min(latent.shape[-2:]) >= crop:
                    self.latents.append(latent)
        if not self.latents:
            raise ValueError(f"no cached latent is at least {crop} on its shorter side")
        areas = np.array([lat.shape[-1] * lat.shape[-2] for lat in self.latents], dtype=np.float64)
        # By the square root of the area, as for pixel crops: big photos count more, not all.
        self.weights = np.sqrt(areas) / np.sqrt(areas).sum()
        self.rng = np.random.default_rng(seed)

    @property
    def channels(self) -> int:
        return self.latents[0].shape[0]

    def set_state(self, seed: int, step: int) -> None:
        self.rng = np.random.default_rng([seed, step])

    def batch(self, size: int) -> torch.Tensor:
        crop, rng = self.crop, self.rng
        picked = []
        for index in rng.choice(len(self.latents), size=size, p=self.weights):
            latent = self.latents[index]
            y = int(rng.integers(0, latent.shape[-2] - crop + 1))
            x = int(rng.integers(0, latent.shape[-1] - crop + 1))
            picked.append(latent[:, y : y + crop, x : x + crop].float())
        return torch.stack(picked)

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and standard deviation over every cached latent position."""
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for latent in self.latents:
            flat = latent.double().flatten(1)
            total += flat.sum(1)
            squares += flat.pow(2).sum(1)
            count += flat.shape[1]
        mean = total / count
        return mean.float(), (squares / count - mean.pow(2)).sqrt().float()
