"""The one limit on how large a picture enhance decodes: a guard against decompression bombs.

A few kilobytes of JPEG, PNG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL or enhance container can
declare hundreds of megapixels and take gigabytes to decode. Every decoder here reads the
size its input declares and checks it against `max_pixels()` before decoding a pixel.

The limit is `DEFAULT_MAX_MEGAPIXELS` (150 MP: large camera files still pass), or the
environment variable `ENHANCE_MAX_MEGAPIXELS` (a positive number of megapixels), or an
explicit value passed down by `enhance run --max-megapixels`. Pillow's own guard is
raised to match, so this is the limit that applies.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings

from .errors import BadInput, EnhanceError

DEFAULT_MAX_MEGAPIXELS = 150.0
ENV_VAR = "ENHANCE_MAX_MEGAPIXELS"
RAISE_HINT = f"set {ENV_VAR} (or `enhance run --max-megapixels`) to raise it for genuine large images"


def max_pixels(override: int | float | None = None) -> int:
    """The pixel limit: `override` when given, else $ENHANCE_MAX_MEGAPIXELS, else the default."""
    if override is not None:
        return int(override)
    text = os.environ.get(ENV_VAR, "").strip()
    if not text:
        return int(DEFAULT_MAX_MEGAPIXELS * 1e6)
    try:
        megapixels = float(text)
    except ValueError:
        megapixels = math.nan
    if not (math.isfinite(megapixels) and megapixels > 0):
        raise EnhanceError(f"{ENV_VAR}={text!r} must be a positive number of megapixels")
    return int(megapixels * 1e6)


def check_pixels(width: int, height: int, what: str, limit: int | float | None = None) -> None:
    """Raises BadInput naming `what` when a declared `width` x `height` is over the limit."""
    allowed = max_pixels(limit)
    if width < 0 or height < 0 or width * height > allowed:
        raise BadInput(
            f"{what}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
            f"{allowed / 1e6:g} (a possible decompression bomb; {RAISE_HINT})"
        )


_PILLOW_GUARD = threading.Lock()


def open_with_pillow(data: bytes, formats: list[str] | None = None):
    """`PIL.Image.open` of `data` (headers only, nothing decoded), with Pillow's own size guard off.

    Pillow refuses an image over twice `Image.MAX_IMAGE_PIXELS` (about 179 MP) as it opens
    it, before the caller's `check_pixels` could name our limit and how to raise it; with
    its guard off while opening, the one limit is ours. Callers check the size before
    `load()`.
    """
    from PIL import Image

    with _PILLOW_GUARD, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(io.BytesIO(data), formats=formats)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
