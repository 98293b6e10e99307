"""Training pairs: random crops of real photos, degraded on the fly by a base codec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, JpegImagePlugin

from ..image import find_images  # noqa: F401  (train/latents.py imports it from here)


def every_nth_per_folder(paths: list[Path], n: int) -> list[Path]:
    """The first, (n+1)-th, (2n+1)-th ... of each folder's images, in the given order: a subset that
    keeps every source folder's share (the training folders are different collections)."""
    if n < 1:
        raise ValueError(f"every: a whole number from 1, not {n}")
    seen: dict[Path, int] = {}
    kept = []
    for path in paths:
        index = seen.get(path.parent, 0)
        seen[path.parent] = index + 1
        if index % n == 0:
            kept.append(path)
    return kept


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def has_full_chroma(path: Path) -> bool:
    """False for a JPEG file with subsampled chroma (4:2:0 or 4:2:2): its colour holds nothing
    above half resolution, so its crops cannot teach the finest chroma band. BSDS500's files are
    4:2:0; with them as targets the realism end's finest chroma was 57% of the originals' (q10, val)."""
    with Image.open(path) as im:
        return not (im.format == "JPEG" and JpegImagePlugin.get_sampling(im) > 0)


@dataclass(frozen=True)
class JpegDegradation:
    """Pillow (libjpeg-turbo) JPEG at a spread of qualities and both chroma modes.

    Low qualities are over-sampled because that is where an enhancer earns its keep;
    a share of greyscale encodes teaches the model single-channel JPEGs too.
    """

    quality_min: int = 5
    quality_max: int = 90
    low_quality_max: int = 40
    low_quality_share: float = 0.6
    subsampling_420_share: float = 0.6
    greyscale_share: float = 0.08

    def sample_rate(self, rng: np.random.Generator) -> int:
        if rng.random() < self.low_quality_share:
            return int(rng.integers(self.quality_min, self.low_quality_max + 1))
        return int(rng.integers(self.quality_min, self.quality_max + 1))

    def degrade(self, image: np.ndarray, quality: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Returns (target, decoded), both uint8 HxWx3; greyscale makes both grey.

        The JPEG is made by the codec adapter (`enhance.codecs.pillow.JpegCodec`), as at inference.
        """
        from ..codecs.pillow import JpegCodec

        if rng.random() < self.greyscale_share:
            grey = np.asarray(Image.fromarray(image).convert("L"))
            target = np.repeat(grey[..., None], 3, axis=2)
            codec = JpegCodec()
            return target, codec.decode(codec.encode_greyscale(grey, quality))
        codec = JpegCodec(subsampling="4:2:0" if rng.random() < self.subsampling_420_share else "4:4:4")
        return image, codec.decode(codec.encode(image, quality))


DEGRADATIONS = {"jpeg": JpegDegradation}


class CropBatch(NamedTuple):
    targets: np.ndarray  # uint8 N x crop x crop x 3
    decoded: np.ndarray  # the same, through the codec
    rates: np.ndarray  # int N
    # bool N: the target's chroma is whole (its source's chroma is full resolution, or the target is grey).
    full_chroma: np.ndarray


def _is_grey(image: np.ndarray) -> bool:
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


class CropSampler:
    """Holds decoded training photos in memory and draws degraded crop batches."""

    def __init__(self, paths: list[Path], crop: int, degradation, seed: int = 0):
        self.crop = crop
        self.degradation = degradation
        self.images, self.full_chroma = [], []
        for path in paths:
            image = load_rgb(path)
            if min(image.shape[:2]) >= crop:
                self.images.append(image)
                self.full_chroma.append(has_full_chroma(path))
        if not self.images:
            raise ValueError(f"no training image is at least {crop} px on its shorter side")
        areas = np.array([im.shape[0] * im.shape[1] for im in self.images], dtype=np.float64)
        # Sample images by the square root of their area: large photos give more
        # distinct crops, but should not drown out the small ones.
        weights = np.sqrt(areas)
        self.weights = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def set_state(self, seed: int, step: int) -> None:
        """Reseed so a resumed run draws different batches from the ones already seen."""
        self.rng = np.random.default_rng([seed, step])

    def batch(self, size: int) -> CropBatch:
        rng, crop = self.rng, self.crop
        targets, decoded, rates, full_chroma = [], [], [], []
        for index in rng.choice(len(self.images), size=size, p=self.weights):
            image = self.images[index]
            y = int(rng.integers(0, image.shape[0] - crop + 1))
            x = int(rng.integers(0, image.shape[1] - crop + 1))
            patch = image[y : y + crop, x : x + crop]
            patch = np.rot90(patch, k=int(rng.integers(4)))
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            patch = np.ascontiguousarray(patch)
            rate = self.degradation.sample_rate(rng)
            target, dec = self.degradation.degrade(patch, rate, rng)
            targets.append(target)
            decoded.append(dec)
            rates.append(rate)
            full_chroma.append(self.full_chroma[index] or _is_grey(target))
        return CropBatch(np.stack(targets), np.stack(decoded), np.array(rates), np.array(full_chroma))
