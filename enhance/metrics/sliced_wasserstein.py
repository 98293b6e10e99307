"""Realism distance: sliced Wasserstein distance between Laplacian-pyramid patch sets.

Follows Karras et al., "Progressive Growing of GANs" (ICLR 2018), metrics/sliced_wasserstein.py:

- each image (uint8 RGB, as float 0..255) is split into a Laplacian pyramid with OpenCV's
  pyrDown/pyrUp kernel, from full resolution down to the last level whose smaller side is
  still >= 16 px (the same number of levels for every image: set by the smallest image);
- from every level of every image, `patches_per_image` 7x7x3 neighbourhoods are taken at
  uniformly random positions fully inside the level (a 147-d descriptor each);
- per level and per set, descriptors are normalised by their per-channel mean and standard
  deviation over the whole set (so a global colour or contrast change is not measured: SWD
  compares the distribution of local structure);
- per level, the SWD is the mean over `repeats` x `directions_per_repeat` random unit
  directions of the 1-D Wasserstein-1 distance between the projected descriptor sets
  (sort both projections, mean absolute difference), projected in float32 as the paper's code;
- reported like the paper, multiplied by 1e3 ("SWD x 10^3"), per level (finest first) by
  `swd_by_level`, and averaged over levels by `swd`. 0 means identical patch statistics.

Both sets must hold the same number of images (outputs of a method vs their originals).
Patch positions come from `seed` and are the same for both sets wherever image sizes match,
so identical sets give exactly 0 and paired sets are compared with less sampling noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BadInput
from .inputs import check_image_set
from .pyramid import laplacian_pyramid

PATCH_SIZE = 7
SMALLEST_LEVEL = 16
UNITS = 1e3


def _level_count(images: Sequence[np.ndarray]) -> int:
    side = min(min(image.shape[:2]) for image in images)
    if side < SMALLEST_LEVEL:
        raise BadInput(
            f"SWD needs images of at least {SMALLEST_LEVEL}x{SMALLEST_LEVEL}; the smallest side here is {side}"
        )
    levels = 1
    while (side + 1) // 2 >= SMALLEST_LEVEL:
        side = (side + 1) // 2
        levels += 1
    return levels


def _patches(level: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random 7x7 neighbourhoods of a 3xHxW level, as (count, 3, 7, 7)."""
    half = PATCH_SIZE // 2
    height, width = level.shape[1:]
    rows = rng.integers(half, height - half, size=count)
    cols = rng.integers(half, width - half, size=count)
    offsets = np.arange(-half, half + 1)
    row_index = (rows[:, None] + offsets)[:, None, :, None]
    col_index = (cols[:, None] + offsets)[:, None, None, :]
    return level[np.arange(3)[None, :, None, None], row_index, col_index]


def _descriptors(images: Sequence[np.ndarray], levels: int, patches_per_image: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, 0])
    per_level: list[list[np.ndarray]] = [[] for _ in range(levels)]
    for image in images:
        pyramid = laplacian_pyramid(np.moveaxis(image, 2, 0), levels)
        for level, band in enumerate(pyramid):
            per_level[level].append(_patches(band, patches_per_image, rng))
    normalised = []
    for patches in per_level:
        descriptors = np.concatenate(patches)
        descriptors = descriptors - descriptors.mean(axis=(0, 2, 3), keepdims=True)
        spread = descriptors.std(axis=(0, 2, 3), keepdims=True)
        descriptors = descriptors / np.where(spread > 0, spread, 1.0)
        normalised.append(descriptors.reshape(len(descriptors), -1).astype(np.float32))
    return normalised


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, repeats: int, directions: int, rng: np.random.Generator) -> float:
    distances = []
    for _ in range(repeats):
        basis = rng.standard_normal((a.shape[1], directions))
        basis = (basis / np.linalg.norm(basis, axis=0, keepdims=True)).astype(np.float32)
        projected_a = np.sort(a @ basis, axis=0)
        projected_b = np.sort(b @ basis, axis=0)
        distances.append(np.mean(np.abs(projected_a - projected_b), dtype=np.float64))
    return float(np.mean(distances))


def swd_by_level(
    originals: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    *,
    seed: int = 0,
    patches_per_image: int = 128,
    repeats: int = 4,
    directions_per_repeat: int = 128,
) -> list[float]:
    """SWD x 1e3 per pyramid level, finest first."""
    originals = check_image_set(originals, "originals")
    outputs = check_image_set(outputs, "outputs")
    if len(originals) != len(outputs):
        raise BadInput(f"SWD compares equal-sized sets; got {len(originals)} originals and {len(outputs)} outputs")
    levels = _level_count(originals + outputs)
    reference = _descriptors(originals, levels, patches_per_image, seed)
    candidate = _descriptors(outputs, levels, patches_per_image, seed)
    rng = np.random.default_rng([seed, 1])
    return [
        UNITS * _sliced_wasserstein(a, b, repeats, directions_per_repeat, rng)
        for a, b in zip(reference, candidate, strict=True)
    ]


def swd(originals: Sequence[np.ndarray], outputs: Sequence[np.ndarray], *, seed: int = 0) -> float:
    """SWD x 1e3 averaged over pyramid levels (lower is more realistic; 0 for identical sets)."""
    return float(np.mean(swd_by_level(originals, outputs, seed=seed)))
