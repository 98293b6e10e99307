"""PSNR on RGB and on BT.601 luma, and PSNR-B (Yim & Bovik 2011).

Conventions (all on uint8 HxWx3 inputs, peak 255):

- `psnr_rgb`: one MSE over every pixel and channel, as CompressAI reports `psnr-rgb`
  (not the mean of three per-channel PSNRs).
- `psnr_y`: on Y = 16 + 65.481 R + 128.553 G + 24.966 B with R, G, B in [0, 1]
  (BT.601 "studio swing" luma of the JPEG-restoration literature: ARCNN, DnCNN, QGAC, FBCNN),
  kept as float (BasicSR's convention; MATLAB's rgb2ycbcr would round it to uint8).
- Identical images give `inf` (no cap), so average PSNR over a set in dB only after
  deciding how to treat lossless pairs.

PSNR-B (C. Yim, A. C. Bovik, "Quality Assessment of Deblocked Images", IEEE TIP 20(1), 2011)
adds to the MSE a blocking effect factor computed on the *distorted* image alone:

    D_B   = mean squared difference across 8x8 block boundaries (pairs of pixels
            (x=8k-1, x=8k) horizontally and (y=8k-1, y=8k) vertically),
    D_B^c = the same over every other pair of neighbouring pixels,
    BEF   = eta * (D_B - D_B^c) if D_B > D_B^c else 0,  eta = log2(8) / log2(min(H, W)),
    PSNR-B = 10 log10(255^2 / (MSE + BEF)).

Block boundaries are counted exactly (the paper's N_HB = N_V (N_H/8 - 1) assumes sizes that
are multiples of 8; for other sizes the last partial block's edge is a boundary too). An
image too small to contain a boundary has BEF 0. The default channel is Y, as the grayscale
JPEG-artifact benchmarks (LIVE1, Classic5, BSDS500) report it; `channels="rgb"` averages the
three per-channel PSNR-B values in dB, as QGAC and FBCNN report colour PSNR-B. The BEF is on
the distorted image as in the paper and QGAC's reference code (KAIR's `calculate_psnrb`
computes it on its first argument, which its FBCNN scripts pass the ground truth as). On
sizes that are multiples of 8, BEF and the colour PSNR-B agree exactly with KAIR's
`_blocking_effect_factor` applied to the distorted image (checked during development).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BadInput
from .inputs import bt601_luma, check_pair

PEAK = 255.0
JPEG_BLOCK = 8


def _psnr_from_mse(mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK * PEAK / mse)


def mse(reference: np.ndarray, distorted: np.ndarray) -> float:
    reference, distorted = check_pair(reference, distorted)
    return float(np.mean((reference.astype(np.float64) - distorted.astype(np.float64)) ** 2))


def psnr_rgb(reference: np.ndarray, distorted: np.ndarray) -> float:
    return _psnr_from_mse(mse(reference, distorted))


def psnr_y(reference: np.ndarray, distorted: np.ndarray) -> float:
    reference, distorted = check_pair(reference, distorted)
    return _psnr_from_mse(float(np.mean((bt601_luma(reference) - bt601_luma(distorted)) ** 2)))


def blocking_effect_factor(plane: np.ndarray, block: int = JPEG_BLOCK) -> float:
    """BEF of one channel (HxW float array), Yim & Bovik eq. (5)-(9)."""
    height, width = plane.shape
    horizontal = (plane[:, :-1] - plane[:, 1:]) ** 2  # pair (x, x+1) sits at column x
    vertical = (plane[:-1, :] - plane[1:, :]) ** 2
    on_column = (np.arange(width - 1) % block) == block - 1
    on_row = (np.arange(height - 1) % block) == block - 1
    boundary_count = height * int(on_column.sum()) + width * int(on_row.sum())
    inner_count = horizontal.size + vertical.size - boundary_count
    # eta = log2(B)/log2(min(H, W)) is undefined for a one-pixel-thin image.
    if boundary_count == 0 or inner_count == 0 or min(height, width) < 2:
        return 0.0
    boundary = (horizontal[:, on_column].sum() + vertical[on_row, :].sum()) / boundary_count
    inner = (horizontal[:, ~on_column].sum() + vertical[~on_row, :].sum()) / inner_count
    if boundary <= inner:
        return 0.0
    return float(math.log2(block) / math.log2(min(height, width)) * (boundary - inner))


def _psnr_b_plane(reference: np.ndarray, distorted: np.ndarray) -> float:
    mse_b = float(np.mean((reference - distorted) ** 2)) + blocking_effect_factor(distorted)
    return _psnr_from_mse(mse_b)


def psnr_b(reference: np.ndarray, distorted: np.ndarray, *, channels: str = "y") -> float:
    reference, distorted = check_pair(reference, distorted)
    if channels == "y":
        return _psnr_b_plane(bt601_luma(reference), bt601_luma(distorted))
    if channels == "rgb":
        ref, dist = reference.astype(np.float64), distorted.astype(np.float64)
        return float(np.mean([_psnr_b_plane(ref[..., c], dist[..., c]) for c in range(3)]))
    raise BadInput(f"psnr_b: channels must be 'y' or 'rgb', got {channels!r}")
