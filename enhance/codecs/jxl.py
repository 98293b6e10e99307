"""JPEG XL through imagecodecs (libjxl)."""

from __future__ import annotations

import numpy as np

from ..errors import BadInput, EnhanceError
from .base import BuiltinCodec, check_pixel_count

CODESTREAM_SIGNATURE = b"\xff\x0a"
CONTAINER_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# SizeHeader's aspect ratios (ISO/IEC 18181-1, table A.2): xsize = ysize * numerator / denominator.
ASPECT_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    """Reads JPEG XL's fields: bits least significant first."""

    def __init__(self, data: bytes):
        self.data = data
        self.position = 0

    def read(self, count: int) -> int:
        value = 0
        for index in range(count):
            byte = self.position >> 3
            if byte >= len(self.data):
                raise BadInput("codec jxl: truncated inside the image size header")
            value |= ((self.data[byte] >> (self.position & 7)) & 1) << index
            self.position += 1
        return value

    def u32(self, *bit_counts: int) -> int:
        return self.read(bit_counts[self.read(2)])


def codestream_head(data: bytes) -> bytes:
    """The start of the JPEG XL codestream in `data`: a bare codestream, or the first jxlc/jxlp box's content."""
    if data.startswith(CODESTREAM_SIGNATURE):
        return data
    if not data.startswith(CONTAINER_SIGNATURE):
        raise BadInput("codec jxl: not a JPEG XL file (no JPEG XL signature)")
    offset = len(CONTAINER_SIGNATURE)
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                break
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
            header = 16
        elif size == 0:
            size = len(data) - offset
        if size < header:
            raise BadInput(f"codec jxl: a {kind!r} box of {size} bytes is shorter than its header")
        body = data[offset + header : offset + size]
        if kind == b"jxlc":
            return body
        if kind == b"jxlp":
            return body[4:]  # a partial codestream box starts with its 4-byte sequence number
        offset += size
    raise BadInput("codec jxl: the JPEG XL container holds no codestream box")


def declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG XL file's SizeHeader, read without decoding anything."""
    head = codestream_head(data)
    if not head.startswith(CODESTREAM_SIGNATURE):
        raise BadInput("codec jxl: the codestream does not start with the JPEG XL signature")
    bits = _Bits(head[2:66])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else bits.u32(9, 13, 18, 30) + 1
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = ASPECT_RATIOS[ratio]
        width = height * numerator // denominator
    else:
        width = (bits.read(5) + 1) * 8 if small else bits.u32(9, 13, 18, 30) + 1
    return width, height


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


def distance_from_quality(quality: float) -> float:
    """libjxl's Butteraugli distance for a cjxl `-q` quality (JxlEncoderDistanceFromQuality)."""
    if quality >= 100:
        return 0.0
    if quality >= 30:
        return 0.1 + (100 - quality) * 0.09
    return 53.0 / 3000.0 * quality * quality - 23.0 / 20.0 * quality + 25.0


class JxlCodec(BuiltinCodec):
    """JPEG XL (VarDCT). The quality is cjxl's `-q`, 0..100, higher is better.

    As in cjxl, it maps to libjxl's Butteraugli distance (`distance_from_quality`):
    90 is distance 1.0, libjxl's "visually lossless"; 0 is distance 25, its maximum;
    100 switches to lossless (modular) coding. `effort` is libjxl's speed/size
    trade-off, 1 (fastest) .. 9 (its default is 7).
    """

    name = "jxl"
    family = "classical"
    rate_range = (0.0, 100.0)
    higher_rate_is_better = True
    rate_unit = "quality"
    rate_meaning = "cjxl -q: 0 worst, 90 visually lossless (distance 1), 100 lossless"
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

        distance = distance_from_quality(self._checked_rate(rate))
        pixels = self._checked_image(image)
        if distance == 0:
            return bytes(imagecodecs.jpegxl_encode(pixels, lossless=True, effort=self.effort))
        return bytes(imagecodecs.jpegxl_encode(pixels, distance=distance, effort=self.effort))

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        import imagecodecs

        data = self._checked_bytes(data)
        # The size the header declares, before libjxl allocates it (a 35 KB file can declare 268 MP).
        check_pixel_count(*declared_size(data), self.name)
        try:
            # The first frame only: an animation's frames are not one picture.
            pixels = imagecodecs.jpegxl_decode(data, index=0)
        # imagecodecs raises ValueError for a wrong signature and JpegxlError/RuntimeError for bad data.
        except (ValueError, RuntimeError) as error:
            raise BadInput(f"codec {self.name}: cannot decode {len(data)} bytes as JPEG XL: {error}") from None
        if pixels.ndim == 4:
            pixels = pixels[0]
        return _as_rgb8(pixels)
