"""Projection onto the JPEG quantization constraint set.

A JPEG file fixes, for every 8x8 block of every component, the quantized DCT
coefficients c; the original image had coefficients inside [(c - 1/2) Q, (c + 1/2) Q].
Projecting an enhanced image onto that set (clipping its coefficients to those
intervals, read exactly from the file) keeps every bit of evidence the file holds:
re-encoding the result with the file's tables gives back the file's coefficients.

Chroma is constrained at the file's own resolution: the enhanced chroma is box-
downsampled as libjpeg's encoder does, projected there, and the correction is
upsampled back, so enhanced chroma detail above the subsampled band survives.
"""

from __future__ import annotations

import numpy as np

from .errors import BadInput
from .jpeg import DctCoefficients, inspect_jpeg, read_dct_coefficients

# Clip a little inside each interval so rounding to 8-bit RGB, and libjpeg's integer
# colour conversion and DCT, still quantize back to the same coefficient.
MARGIN_DCT_UNITS = 1.0


def _rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i] for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.0
    return np.stack([y, cb, cr], axis=-1)


def _ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y, cb, cr = ycc[..., 0], ycc[..., 1] - 128.0, ycc[..., 2] - 128.0
    r = y + 1.402 * cr
    g = y - 0.344136286 * cb - 0.714136286 * cr
    b = y + 1.772 * cb
    return np.stack([r, g, b], axis=-1)


def _box_down(plane: np.ndarray, fy: int, fx: int) -> np.ndarray:
    height, width = plane.shape
    padded = np.pad(plane, ((0, -height % fy), (0, -width % fx)), mode="edge")
    return padded.reshape(padded.shape[0] // fy, fy, padded.shape[1] // fx, fx).mean(axis=(1, 3))


def _up(plane: np.ndarray, fy: int, fx: int, height: int, width: int) -> np.ndarray:
    return np.repeat(np.repeat(plane, fy, axis=0), fx, axis=1)[:height, :width]


def project_plane(plane: np.ndarray, coefficients: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Projects one component plane (float, 0..255) onto its blocks' coefficient intervals."""
    from scipy.fft import dctn, idctn  # here: importing scipy.fft costs the thumbnailer's process ~0.4 s

    blocks_y, blocks_x = coefficients.shape[:2]
    height, width = plane.shape
    padded = np.pad(plane, ((0, blocks_y * 8 - height), (0, blocks_x * 8 - width)), mode="edge") - 128.0
    blocks = padded.reshape(blocks_y, 8, blocks_x, 8).transpose(0, 2, 1, 3)
    spectrum = dctn(blocks, axes=(2, 3), norm="ortho")
    q = table.astype(np.float64)[None, None]
    c = coefficients.astype(np.float64)
    margin = np.minimum(MARGIN_DCT_UNITS, 0.25 * q)
    spectrum = np.clip(spectrum, (c - 0.5) * q + margin, (c + 0.5) * q - margin)
    restored = idctn(spectrum, axes=(2, 3), norm="ortho").transpose(0, 2, 1, 3).reshape(blocks_y * 8, blocks_x * 8)
    return restored[:height, :width] + 128.0


# Rounding to 8 bits and clipping to [0, 255] can push a projected coefficient back
# over its interval's edge; alternating the projection with rounding settles them.
PROJECTION_ROUNDS = 3


def project_to_jpeg(enhanced: np.ndarray, jpeg: DctCoefficients | bytes) -> np.ndarray:
    """The image nearest `enhanced` (uint8 HxWx3, as stored) whose JPEG coefficients match the file's.

    `jpeg` is the file's coefficients (`enhance.jpeg.read_dct_coefficients`), or its bytes.
    """
    dct = jpeg if isinstance(jpeg, DctCoefficients) else _coefficients(jpeg)
    height, width = enhanced.shape[:2]
    if (dct.height, dct.width) != (height, width):
        raise BadInput(f"image is {width}x{height} but the JPEG is {dct.width}x{dct.height}")
    for _ in range(PROJECTION_ROUNDS):
        enhanced = _project_once(enhanced, dct)
    return enhanced


# Colour spaces whose quantization constraints the projection works on.
PROJECTABLE_COLOUR_SPACES = ("YCbCr", "grey")


def _coefficients(data: bytes) -> DctCoefficients:
    info = inspect_jpeg(data)
    if info.colour_space not in PROJECTABLE_COLOUR_SPACES:
        raise BadInput(f"JPEG-consistent output needs a YCbCr or greyscale JPEG, not {info.colour_space}")
    return read_dct_coefficients(data, info=info)


def _project_once(enhanced: np.ndarray, dct: DctCoefficients) -> np.ndarray:
    height, width = enhanced.shape[:2]
    if len(dct.coefficients) == 1:
        grey = enhanced.astype(np.float64).mean(axis=2)
        projected = project_plane(grey, dct.y, dct.tables[0])
        out = np.repeat(projected[..., None], 3, axis=2)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if len(dct.coefficients) != 3 or dct.colour_space != "YCbCr":
        raise BadInput(f"JPEG-consistent output needs a YCbCr or greyscale JPEG, not {dct.colour_space}")
    factors = np.asarray(dct.sampling_factors)  # (horizontal, vertical) per component
    max_h, max_v = factors[:, 0].max(), factors[:, 1].max()
    # libjpeg rounds colour conversion and downsampling to integers: see them as it does.
    ycc = np.rint(_rgb_to_ycbcr(enhanced.astype(np.float64)))
    for index in range(3):
        fy, fx = int(max_v // factors[index, 1]), int(max_h // factors[index, 0])
        plane, table = ycc[..., index], dct.tables[index]
        if fy == 1 and fx == 1:
            ycc[..., index] = project_plane(plane, dct.coefficients[index], table)
            continue
        low = np.rint(_box_down(plane, fy, fx))
        correction = project_plane(low, dct.coefficients[index], table) - low
        ycc[..., index] = plane + _up(correction, fy, fx, height, width)
    return np.clip(np.rint(_ycbcr_to_rgb(ycc)), 0, 255).astype(np.uint8)
