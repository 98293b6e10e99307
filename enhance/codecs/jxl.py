"""JPEG XL through imagecodecs (libjxl)."""

from __future__ import annotations

import numpy as np

from ..errors import BadInput, EnhanceError
from .base import BuiltinCodec


def _as_rgb8(pixels: np.ndarray) -> np.ndarray:
    """A decoded JPEG XL frame (grey or colour, with or without alpha, 8/16-bit or float) as uint8 RGB."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] in (1, 2):
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    pixels = pixels[:, :, :3]
    if pixels.dtype == np.uint16:
        pixels = (pixels.astype(np.uint32) * 255 + 32767) // 65535
    elif pixels.dtype.kind == "f":
        pixels = np.round(np.clip(pixels, 0.0, 1.0) * 255)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


class JxlCodec(BuiltinCodec):
    """JPEG XL (VarDCT). The quality is libjxl's Butteraugli distance, lower is better.

    Distance 1.0 is libjxl's "visually lossless", 0.5..3 its recommended range, 25 its
    maximum; distance 0 switches to lossless (modular) coding. `effort` is libjxl's
    speed/size trade-off, 1 (fastest) .. 9 (its default is 7).
    """

    name = "jxl"
    family = "classical"
    rate_range = (0.0, 25.0)
    higher_rate_is_better = False
    rate_unit = "distance"
    integer_rate = False
    file_extension = ".jxl"

    def __init__(self, *, effort: int = 7):
        if effort not in range(1, 10):
            raise EnhanceError(f"codec {self.name}: effort must be 1..9, got {effort!r}")
        self.effort = effort

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n")

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import imagecodecs
        except ImportError:
            return False, "install imagecodecs (pip install imagecodecs)"
        if not imagecodecs.JPEGXL.available:
            return False, "this imagecodecs build has no JPEG XL support; install imagecodecs' PyPI wheel"
        return True, ""

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        self._require_available()
        import imagecodecs

        distance = self._checked_rate(rate)
        pixels = self._checked_image(image)
        if distance == 0:
            return bytes(imagecodecs.jpegxl_encode(pixels, lossless=True, effort=self.effort))
        return bytes(imagecodecs.jpegxl_encode(pixels, distance=distance, effort=self.effort))

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        import imagecodecs

        data = self._checked_bytes(data)
        try:
            pixels = imagecodecs.jpegxl_decode(data)
        # imagecodecs raises ValueError for a wrong signature and JpegxlError/RuntimeError for bad data.
        except (ValueError, RuntimeError) as error:
            raise BadInput(f"codec {self.name}: cannot decode {len(data)} bytes as JPEG XL: {error}") from None
        if pixels.ndim == 4:
            pixels = pixels[0]
        return _as_rgb8(pixels)
