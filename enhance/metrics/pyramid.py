"""Gaussian/Laplacian pyramids with OpenCV's pyrDown/pyrUp kernel, as Karras et al. use for SWD.

Planes are float arrays whose last two axes are (height, width). The 5-tap binomial kernel
[1, 4, 6, 4, 1] / 16 is applied separably with mirrored borders (scipy "mirror" = OpenCV
BORDER_REFLECT_101). Odd sizes are supported: pyr_down keeps ceil(n/2) samples and pyr_up
is cropped back to the finer level's size.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _smooth(planes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    planes = correlate1d(planes, kernel, axis=-1, mode="mirror")
    return correlate1d(planes, kernel, axis=-2, mode="mirror")


def pyr_down(planes: np.ndarray) -> np.ndarray:
    return _smooth(planes, BINOMIAL_5)[..., ::2, ::2]


def pyr_up(planes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Upsample by 2 (zero insertion, then the kernel with gain 4) to `shape` (height, width)."""
    height, width = planes.shape[-2:]
    upsampled = np.zeros(planes.shape[:-2] + (2 * height, 2 * width), dtype=planes.dtype)
    upsampled[..., ::2, ::2] = planes
    return _smooth(upsampled, 2.0 * BINOMIAL_5)[..., : shape[0], : shape[1]]


def laplacian_pyramid(planes: np.ndarray, levels: int) -> list[np.ndarray]:
    """`levels` bands, finest first; the last one is the low-pass residual."""
    gaussian = [planes.astype(np.float64)]
    for _ in range(levels - 1):
        gaussian.append(pyr_down(gaussian[-1]))
    bands = [fine - pyr_up(coarse, fine.shape[-2:]) for fine, coarse in zip(gaussian[:-1], gaussian[1:], strict=True)]
    return bands + [gaussian[-1]]
