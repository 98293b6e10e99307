"""SSIMULACRA 2.1 (Jon Sneyers, Cloudinary; July 2022, updated April 2023), in numpy.

A port of the reference `tools/ssimulacra2.cc` (libjxl / cloudinary/ssimulacra2, BSD-3-Clause),
version 2.1, step by step:

1. sRGB (8-bit, sRGB transfer curve assumed, no alpha) to linear RGB.
2. For each of up to 6 scales: linear RGB to XYB (libjxl's opsin absorbance matrix and bias,
   cube root), then "MakePositiveXYB": X*14 + 0.42, Y + 0.01, (B - Y) + 0.55.
3. Blur with libjxl's recursive Gaussian (sigma 1.5; Charalampidis 2016 truncated-cosine IIR,
   radius 5, zero outside the image) applied to x, y, x^2, y^2 and xy.
4. SSIM' error map without the luminance denominator, 1 - (1 - (mu1 - mu2)^2) *
   (2 sigma12 + C2) / (sigma1^2 + sigma2^2 + C2) with C2 = 0.0009, clipped at 0; and the
   edge map d = (1 + |img2 - mu2|) / (1 + |img1 - mu1|) - 1, split into ringing (d > 0)
   and blurring (d < 0). Each map is pooled by its mean and its 4-norm.
5. 108 published weights, then score = 100 - 10 * p(0.956... * sum)^0.6276 with the published
   cubic p (100 when the weighted sum is not positive).
6. The next scale is the 2x2 box average of the linear RGB (edge pixels repeated on odd sizes).

Two quirks of the reference are kept because scores are defined by it: the size check before
each scale looks at the previous scale, so a scale smaller than 8 px can still be scored (a
12x12 image is scored at 12x12 and 6x6); and when fewer than 6 scales exist the weight index
keeps running, so later weights are applied to earlier scales.

Verified against scores the C++ reference printed for reproducible synthetic pairs (captured
by the imazen/ssimulacra2 Rust port in `src/reference_data.rs`, with SHA-256 hashes of the
raw images): see tests/test_metrics.py. Inputs smaller than 8x8 raise BadInput.
Computation is in float64 where the reference uses float32: on real content the two agree
to ~0.01. Near 100 (tiny differences) the final power law amplifies the reference's float32
rounding, so pairs there can differ from it by a point or two.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from ..errors import BadInput
from .inputs import check_pair

NUM_SCALES = 6
MIN_SIDE = 8
C2 = 0.0009
BLUR_SIGMA = 1.5

# libjxl opsin_params.h
_M02, _M00 = 0.078, 0.30
_M12, _M10 = 0.078, 0.23
_M20, _M21 = 0.24342268924547819, 0.20476744424496821
OPSIN_ABSORBANCE = np.array(
    [
        [_M00, 1.0 - _M02 - _M00, _M02],
        [_M10, 1.0 - _M12 - _M10, _M12],
        [_M20, _M21, 1.0 - _M20 - _M21],
    ]
)
OPSIN_BIAS = 0.0037930732552754493

# Msssim::Score(), indexed [channel X,Y,B][scale][norm 1,4][map ssim, ringing, blurring]:
# one row per (channel, scale).
WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0,
    0.0, 0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752,
    0.0, 0.0016406437456599754, 0.0, 1.8422455520539298, 11.441172603757666, 0.0,
    0.0007989109436015163, 0.000176816438078653, 0.0, 1.8787594979546387, 10.94906990605142, 0.0,
    0.0007289346991508072, 0.9677937080626833, 0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0,
    0.0, 0.0, 0.0, 7.466890328078848, 0.0, 17.445833984131262,
    0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296, 1.027889937768264,
    225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757, 0.0004485436923833408,
    0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0004179171803251336, 0.0017290828234722833, 0.0,
    0.0020827005846636437, 0.0, 0.0, 8.826982764996862, 23.19243343998926, 0.0,
    95.1080498811086, 0.9863978034400682, 0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379,
    0.0, 0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
])  # fmt: skip


def _recursive_gaussian_coefficients(sigma: float) -> tuple[int, np.ndarray, np.ndarray]:
    """Radius N and, per cosine term k = 1, 3, 5, the IIR gains n2_k and d1_k (libjxl
    CreateRecursiveGaussian; equation numbers refer to Charalampidis 2016)."""
    radius = round(3.2795 * sigma + 0.2546)  # (57)
    omega = np.array([1.0, 3.0, 5.0]) * math.pi / (2.0 * radius)
    p = np.array([1.0, -1.0, 1.0]) / np.tan(0.5 * omega)  # (37)
    r = np.array([1.0, -1.0, 1.0]) * p * p / np.sin(omega)  # (44)
    rho = np.exp(-0.5 * sigma * sigma * omega * omega) / radius  # (50)
    d_13 = p[0] * r[1] - r[0] * p[1]
    d_35 = p[1] * r[2] - r[1] * p[2]
    d_51 = p[2] * r[0] - r[2] * p[0]
    zeta_15, zeta_35 = d_35 / d_13, d_51 / d_13  # (52)
    system = np.array([p, r, [zeta_15, zeta_35, 1.0]])  # (56)
    gamma = np.array([1.0, radius * radius - sigma * sigma, zeta_15 * rho[0] + zeta_35 * rho[1] + rho[2]])  # (55)
    beta = np.linalg.solve(system, gamma)  # (53)
    n2 = -beta * np.cos(omega * (radius + 1.0))  # (33)
    d1 = -2.0 * np.cos(omega)
    # libjxl keeps these gains in float32; round them the same way.
    return radius, n2.astype(np.float32).astype(np.float64), d1.astype(np.float32).astype(np.float64)


_RADIUS, _N2, _D1 = _recursive_gaussian_coefficients(BLUR_SIGMA)


def _blur_last_axis(planes: np.ndarray) -> np.ndarray:
    """libjxl FastGaussian1D along the last axis: output n sums three recursions
    y_k[n] = n2_k (x[n-N-1] + x[n+N-1]) - d1_k y_k[n-1] - y_k[n-2], with x = 0 outside the
    image, run from n = 1 - N so the warm-up sees the leading zeros."""
    length = planes.shape[-1]
    padded = np.zeros(planes.shape[:-1] + (length + 3 * _RADIUS,))
    padded[..., 2 * _RADIUS : 2 * _RADIUS + length] = planes
    span = length + _RADIUS - 1
    taps = padded[..., :span] + padded[..., 2 * _RADIUS : 2 * _RADIUS + span]
    out = sum(lfilter([n2], [1.0, d1, 1.0], taps, axis=-1) for n2, d1 in zip(_N2, _D1, strict=True))
    return out[..., _RADIUS - 1 :]


def _blur(planes: np.ndarray) -> np.ndarray:
    """FastGaussian over the last two axes (rows first, then columns, as libjxl)."""
    horizontal = _blur_last_axis(planes)
    return np.swapaxes(_blur_last_axis(np.swapaxes(horizontal, -1, -2)), -1, -2)


def _srgb_to_linear(image: np.ndarray) -> np.ndarray:
    encoded = image.astype(np.float64) / 255.0
    return np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)


def _positive_xyb(linear: np.ndarray) -> np.ndarray:
    """HxWx3 linear RGB to 3xHxW XYB rescaled to about 0..1 (ToXYB + MakePositiveXYB)."""
    mixed = np.maximum(linear @ OPSIN_ABSORBANCE.T + OPSIN_BIAS, 0.0)
    mixed = np.cbrt(mixed) - np.cbrt(OPSIN_BIAS)
    x = 0.5 * (mixed[..., 0] - mixed[..., 1])
    y = 0.5 * (mixed[..., 0] + mixed[..., 1])
    b = mixed[..., 2]
    return np.stack([x * 14.0 + 0.42, y + 0.01, (b - y) + 0.55])


def _downsample_2x(linear: np.ndarray) -> np.ndarray:
    height, width = linear.shape[:2]
    padded = np.pad(linear, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return 0.25 * (padded[0::2, 0::2] + padded[1::2, 0::2] + padded[0::2, 1::2] + padded[1::2, 1::2])


def _mean_and_4norm(error: np.ndarray) -> np.ndarray:
    """Per plane (first axis): [mean, (mean of 4th powers)^(1/4)]."""
    flat = error.reshape(error.shape[0], -1)
    return np.stack([flat.mean(axis=1), np.mean(flat**4, axis=1) ** 0.25], axis=1)


def _scale_norms(reference_xyb: np.ndarray, distorted_xyb: np.ndarray) -> np.ndarray:
    """(3 channels, 2 norms, 3 maps) for one scale."""
    blurred = _blur(
        np.concatenate(
            [
                reference_xyb * reference_xyb,
                distorted_xyb * distorted_xyb,
                reference_xyb * distorted_xyb,
                reference_xyb,
                distorted_xyb,
            ]
        )
    )
    sigma11, sigma22, sigma12, mu1, mu2 = np.split(blurred, 5)
    numerator_means = 1.0 - (mu1 - mu2) ** 2
    numerator_structure = 2.0 * (sigma12 - mu1 * mu2) + C2
    denominator_structure = (sigma11 - mu1 * mu1) + (sigma22 - mu2 * mu2) + C2
    ssim_error = np.maximum(1.0 - numerator_means * numerator_structure / denominator_structure, 0.0)
    edge = (1.0 + np.abs(distorted_xyb - mu2)) / (1.0 + np.abs(reference_xyb - mu1)) - 1.0
    ringing = np.maximum(edge, 0.0)
    blurring = np.maximum(-edge, 0.0)
    return np.stack([_mean_and_4norm(ssim_error), _mean_and_4norm(ringing), _mean_and_4norm(blurring)], axis=2)


def ssimulacra2(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA 2.1 score: 100 for identical images, ~90 visually lossless, 10 very low quality,
    negative for extreme distortion."""
    reference, distorted = check_pair(reference, distorted)
    height, width = reference.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise BadInput(f"SSIMULACRA2 needs images of at least {MIN_SIDE}x{MIN_SIDE}; got {width}x{height}")
    linear_reference, linear_distorted = _srgb_to_linear(reference), _srgb_to_linear(distorted)
    per_scale = []
    for scale in range(NUM_SCALES):
        if min(linear_reference.shape[:2]) < MIN_SIDE:
            break
        if scale:
            linear_reference = _downsample_2x(linear_reference)
            linear_distorted = _downsample_2x(linear_distorted)
        per_scale.append(_scale_norms(_positive_xyb(linear_reference), _positive_xyb(linear_distorted)))
    # Weight order is channel-major, then scale, norm, map; with fewer than 6 scales the
    # reference keeps counting, so the weights used are the first 18 * len(per_scale).
    norms = np.stack(per_scale, axis=1)  # (channel, scale, norm, map)
    weighted = float(np.dot(WEIGHTS[: norms.size], np.abs(norms).ravel()))
    weighted *= 0.9562382616834844
    weighted = 2.326765642916932 * weighted - 0.020884521182843837 * weighted**2 + 6.248496625763138e-05 * weighted**3
    if weighted <= 0.0:
        return 100.0
    return 100.0 - 10.0 * weighted**0.6276336467831387
