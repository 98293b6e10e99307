"""High-frequency energy of an output relative to its reference: a blur/sharpness indicator.

hf_energy_ratio = sum(L0(distorted)^2) / sum(L0(reference)^2), where L0 is the finest band of
the Laplacian pyramid (the image minus pyrUp(pyrDown(image)), OpenCV kernel) of BT.601 luma.
That band holds roughly the frequencies above a quarter of the sampling rate (half of
Nyquist): fine texture, edges, noise and blocking.

1.0 means as much fine detail as the reference, < 1 blurrier (0 for a flat output), > 1 more
high-frequency energy than the reference (noise, ringing, blocking or invented texture). It
says nothing about whether the detail is the right one; pair it with a fidelity metric.
A flat reference (finest-band energy below 1e-12 per pixel, far under 8-bit quantisation
noise, so only rounding residue) gives 1.0 against a flat output and inf otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from .inputs import bt601_luma, check_pair
from .pyramid import pyr_down, pyr_up

FLAT_ENERGY_PER_PIXEL = 1e-12


def _finest_band_energy(luma: np.ndarray) -> float:
    band = luma - pyr_up(pyr_down(luma), luma.shape)
    return float(np.sum(band * band))


def hf_energy_ratio(reference: np.ndarray, distorted: np.ndarray) -> float:
    reference, distorted = check_pair(reference, distorted)
    reference_energy = _finest_band_energy(bt601_luma(reference))
    distorted_energy = _finest_band_energy(bt601_luma(distorted))
    flat = FLAT_ENERGY_PER_PIXEL * reference.shape[0] * reference.shape[1]
    if reference_energy <= flat:
        return 1.0 if distorted_energy <= flat else math.inf
    return distorted_energy / reference_energy
