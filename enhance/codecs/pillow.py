"""Codecs Pillow implements: JPEG (libjpeg-turbo), WebP, AVIF (libavif) and JPEG 2000 (OpenJPEG)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ..errors import BadInput, EnhanceError
from .base import PillowCodec, checked_subsampling, iso_brands

# HEIF brands: AVIF and HEIC are both HEIF files; libavif lists `mif1` too, so a file with
# an AVIF brand is AVIF whatever else it lists (HeicCodec.recognises defers to this).
AVIF_BRANDS = {b"avif", b"avis"}


class JpegCodec(PillowCodec):
    """Baseline JPEG with libjpeg's standard tables scaled by the IJG quality (1..100).

    Pillow's Huffman tables are the standard ones (no `optimize`), as most cameras and
    tools write them. An RGB image whose channels are equal is still written as three
    components, so decoding gives back the same kind of file the enhancer was trained on.
    """

    name = "jpeg"
    rate_range = (1, 100)
    higher_rate_is_better = True
    file_extension = ".jpg"
    rate_meaning = "IJG quality (libjpeg, cjpeg -quality): 1 worst, 100 best"
    pillow_format = "JPEG"
    pillow_feature = "jpg"

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return head[:3] == b"\xff\xd8\xff"

    def __init__(self, *, subsampling: str = "4:2:0"):
        self.subsampling = checked_subsampling(self.name, subsampling)

    def _save_options(self, rate: float) -> dict:
        return {"quality": int(rate), "subsampling": self.subsampling}

    def encode_greyscale(self, luma: np.ndarray, rate: float) -> bytes:
        """A one-component (greyscale) JPEG of uint8 HxW `luma`, as cameras and scanners write them."""
        self._require_available()
        options = self._save_options(self._checked_rate(rate))
        options.pop("subsampling")
        if not isinstance(luma, np.ndarray) or luma.dtype != np.uint8 or luma.ndim != 2:
            raise BadInput(f"codec {self.name}: expected a uint8 HxW greyscale array, got {getattr(luma, 'shape', luma)}")
        buffer = io.BytesIO()
        Image.fromarray(luma).save(buffer, format=self.pillow_format, **options)
        return buffer.getvalue()


class WebpCodec(PillowCodec):
    """Lossy WebP (VP8 intra, always 4:2:0); quality 0..100, `method` 0 (fast) .. 6 (slow)."""

    name = "webp"
    rate_range = (0, 100)
    higher_rate_is_better = True
    file_extension = ".webp"
    rate_meaning = "libwebp quality (cwebp -q): 0 worst, 100 best"
    pillow_format = "WEBP"
    pillow_feature = "webp"

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"

    def __init__(self, *, method: int = 4):
        if method not in range(7):
            raise EnhanceError(f"codec {self.name}: method must be 0..6, got {method!r}")
        self.method = method

    def _save_options(self, rate: float) -> dict:
        return {"quality": int(rate), "method": self.method, "lossless": False}


class AvifCodec(PillowCodec):
    """AVIF (AV1 intra) through Pillow's own libavif plugin; quality 0..100, `speed` 0 (slow) .. 10."""

    name = "avif"
    rate_range = (0, 100)
    higher_rate_is_better = True
    file_extension = ".avif"
    rate_meaning = "libavif quality (avifenc -q): 0 worst, 100 best"
    pillow_format = "AVIF"
    pillow_feature = "avif"

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return bool(iso_brands(head) & AVIF_BRANDS)

    def __init__(self, *, speed: int = 6, subsampling: str = "4:2:0"):
        if speed not in range(11):
            raise EnhanceError(f"codec {self.name}: speed must be 0..10, got {speed!r}")
        self.speed = speed
        self.subsampling = checked_subsampling(self.name, subsampling)

    def _save_options(self, rate: float) -> dict:
        return {"quality": int(rate), "speed": self.speed, "subsampling": self.subsampling}


class Jpeg2000Codec(PillowCodec):
    """JPEG 2000 (irreversible 9/7 wavelet, one quality layer) in a .jp2 file.

    The quality is OpenJPEG's target PSNR in dB (`quality_mode="dB"`): the encoder
    truncates the code-blocks until the reconstruction reaches about that PSNR, so the
    knob means the same on every image, unlike a compression ratio. 20 dB is a smeared
    thumbnail, 40 dB good, 60 dB near the irreversible transform's own limit.
    """

    name = "jpeg2000"
    rate_range = (20.0, 60.0)
    higher_rate_is_better = True
    rate_unit = "PSNR dB"
    integer_rate = False
    file_extension = ".jp2"
    rate_meaning = "target PSNR in dB (OpenJPEG): 20 smeared, 40 good, 60 near lossless"
    pillow_format = "JPEG2000"
    pillow_feature = "jpg_2000"

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51")

    def _save_options(self, rate: float) -> dict:
        return {"quality_mode": "dB", "quality_layers": [rate], "irreversible": True}
