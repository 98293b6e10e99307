"""Enhancing decoded pixels with what the receiver knows about how they were coded."""

from __future__ import annotations

import numpy as np

from .errors import BadInput


def jpeg_rate(jpeg_bytes: bytes) -> float:
    """The rate a JPEG model is conditioned on: the IJG quality estimated from the file's tables."""
    from .jpeg import inspect_jpeg

    return float(inspect_jpeg(jpeg_bytes).estimated_quality)


def enhance_pixels(
    pixels: np.ndarray,
    *,
    jpeg_bytes: bytes | None,
    enhancer,
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    rate: float | None = None,
) -> np.ndarray:
    """Enhances stored pixels (uint8 HxWx3, before any EXIF orientation) of a decoded image.

    For a JPEG, pass its bytes: the rate comes from its quantization tables and
    `consistent=True` projects the result onto the file's quantization constraint set.
    For other base codecs pass `rate` (the codec's own rate parameter) instead.
    """
    if jpeg_bytes is not None:
        if rate is None:
            rate = jpeg_rate(jpeg_bytes)
    elif consistent:
        raise BadInput("JPEG-consistent output needs the JPEG file itself")
    enhanced = enhancer.enhance(pixels, rate=rate, steps=steps, seed=seed)
    if consistent:
        from .consistency import project_to_jpeg

        enhanced = project_to_jpeg(enhanced, jpeg_bytes)
    return enhanced
