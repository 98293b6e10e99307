"""MS-SSIM (Wang, Simoncelli & Bovik 2003) on RGB, as CompressAI reports `ms-ssim-rgb`.

Structurally identical to pytorch-msssim's `ms_ssim(x, y, data_range=1.0)`, which is what
CompressAI calls: 5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), an 11-tap
Gaussian window with sigma 1.5 applied separably with no padding ("valid"), K1 = 0.01,
K2 = 0.03, negative contrast-structure terms clipped to 0 before the weighted product,
downsampling by 2x2 average pooling (an odd side gets one leading zero that counts in the
mean, as torch's avg_pool2d with padding does there), each channel scored on its own and the
three MS-SSIM values averaged. Computed in float64 with numpy/scipy; it agrees with
pytorch-msssim run in float64 to ~1e-7 (pytorch-msssim builds its window in float32).

Minimum size: both sides at least 161 pixels ((11 - 1) * 2**4 + 1), so that the coarsest
scale still holds one full window. Smaller images raise BadInput instead of silently using
fewer scales, which would give numbers not comparable with published ones.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

from ..errors import BadInput
from .inputs import check_pair

SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03
MIN_SIDE = (WINDOW_SIZE - 1) * 2 ** (len(SCALE_WEIGHTS) - 1) + 1


def _gaussian_window() -> np.ndarray:
    coords = np.arange(WINDOW_SIZE, dtype=np.float64) - WINDOW_SIZE // 2
    window = np.exp(-(coords**2) / (2 * WINDOW_SIGMA**2))
    return window / window.sum()


def _blur_valid(planes: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable correlation over the last two axes, keeping only fully covered samples."""
    margin = WINDOW_SIZE // 2
    blurred = correlate1d(correlate1d(planes, window, axis=-1), window, axis=-2)
    return blurred[..., margin:-margin, margin:-margin]


def _ssim_and_contrast_structure(x: np.ndarray, y: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean SSIM and mean contrast-structure term, for data in [0, 1]."""
    c1, c2 = K1**2, K2**2
    mu_x, mu_y, xx, yy, xy = _blur_valid(np.stack([x, y, x * x, y * y, x * y]), window)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * contrast_structure).mean(axis=(1, 2)), contrast_structure.mean(axis=(1, 2))


def _average_pool_2x(planes: np.ndarray) -> np.ndarray:
    """torch avg_pool2d(kernel 2, padding=side % 2): an odd side gets one zero in front and
    the zeros count in the mean (count_include_pad)."""
    height, width = planes.shape[-2:]
    padded = np.pad(planes, ((0, 0), (height % 2, height % 2), (width % 2, width % 2)))
    padded = padded[:, : padded.shape[1] // 2 * 2, : padded.shape[2] // 2 * 2]
    channels, padded_height, padded_width = padded.shape
    return padded.reshape(channels, padded_height // 2, 2, padded_width // 2, 2).mean(axis=(2, 4))


def ms_ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    reference, distorted = check_pair(reference, distorted)
    height, width = reference.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise BadInput(
            f"MS-SSIM needs both sides >= {MIN_SIDE} px (5 scales of an {WINDOW_SIZE}-tap window); got {width}x{height}"
        )
    x = np.moveaxis(reference, 2, 0).astype(np.float64) / 255.0
    y = np.moveaxis(distorted, 2, 0).astype(np.float64) / 255.0
    window = _gaussian_window()
    factors = []
    for scale in range(len(SCALE_WEIGHTS)):
        ssim, contrast_structure = _ssim_and_contrast_structure(x, y, window)
        if scale < len(SCALE_WEIGHTS) - 1:
            factors.append(np.maximum(contrast_structure, 0.0))
            x, y = _average_pool_2x(x), _average_pool_2x(y)
    factors.append(np.maximum(ssim, 0.0))
    weights = np.array(SCALE_WEIGHTS)[:, None]
    per_channel = np.prod(np.stack(factors) ** weights, axis=0)
    return float(per_channel.mean())
