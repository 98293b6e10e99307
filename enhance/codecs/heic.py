"""HEIC (HEVC intra in HEIF) through pillow-heif (libheif with x265 and libde265)."""

from __future__ import annotations

import io
import struct

import numpy as np

from ..errors import BadInput, EnhanceError
from .base import BuiltinCodec, check_pixel_count, checked_subsampling, iso_brands, rgb_array
from .pillow import AVIF_BRANDS

HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


class HeicCodec(BuiltinCodec):
    """HEIC, as phones write it: one HEVC intra frame (x265), quality 0..100, 4:2:0 by default.

    `preset` is x265's speed preset (None keeps libheif's, "slow"); "ultrafast" is about
    eight times faster for files about 10% larger.
    """

    name = "heic"
    family = "classical"
    rate_range = (0, 100)
    higher_rate_is_better = True
    rate_meaning = "libheif quality (heif-enc -q): 0 worst, 100 best"
    file_extension = ".heic"

    def __init__(self, *, subsampling: str = "4:2:0", preset: str | None = None):
        self.subsampling = checked_subsampling(self.name, subsampling)
        if preset is not None and preset not in X265_PRESETS:
            raise EnhanceError(f"codec {self.name}: preset must be one of {', '.join(X265_PRESETS)}, got {preset!r}")
        self.preset = preset

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        brands = iso_brands(head)
        return bool(brands & HEIC_BRANDS) and not brands & AVIF_BRANDS

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import pillow_heif
        except ImportError:
            return False, "install pillow-heif (pip install pillow-heif)"
        info = pillow_heif.libheif_info()
        if not info.get("HEIF"):
            return False, "this libheif has no HEVC encoder; install pillow-heif's PyPI wheel (it bundles x265)"
        if "libde265" not in " ".join(info.get("decoders", {})):
            return False, "this libheif has no HEVC decoder; install pillow-heif's PyPI wheel (it bundles libde265)"
        return True, ""

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        self._require_available()
        import pillow_heif

        quality = int(self._checked_rate(rate))
        pixels = self._checked_image(image)
        height, width = pixels.shape[:2]
        heif = pillow_heif.from_bytes(mode="RGB", size=(width, height), data=pixels.tobytes())
        buffer = io.BytesIO()
        options = {"enc_params": {"preset": self.preset}} if self.preset else {}
        heif.save(buffer, quality=quality, subsampling=self.subsampling, **options)
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        import pillow_heif

        data = self._checked_bytes(data)
        try:
            # Parses the HEIF boxes only; pixels are decoded by `to_pillow`, after the size check.
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            check_pixel_count(*heif.size, self.name)
            return rgb_array(heif.to_pillow())
        except BadInput:
            raise
        # libheif reports bad data as ValueError (invalid input) or RuntimeError (decoder errors);
        # pillow-heif's own box parsing raises IndexError, SyntaxError or struct errors on
        # mangled metadata.
        except (ValueError, RuntimeError, OSError, EOFError, IndexError, SyntaxError, KeyError, TypeError, struct.error) as error:
            raise BadInput(f"codec {self.name}: cannot decode {len(data)} bytes as HEIC: {error or type(error).__name__}") from None
