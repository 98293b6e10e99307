"""The codec protocol, and what the built-in codecs share.

A codec turns a uint8 HxWx3 RGB array into bytes and back. Its quality knob runs over
`quality_range` in the codec's own unit (a JPEG quality, a QP, a target PSNR, a
Butteraugli distance, a model index); `higher_quality_is_better` says which way it goes.
`available()` answers without raising; `encode`/`decode` raise `CodecUnavailable` (saying
what to install) when it answers False, and `decode` raises `BadInput` for bytes it cannot
decode. A codec whose bytes have no file format of its own (`needs_container`) is stored
in the enhance container; the others can be written to a file with `file_extension`.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import limits
from ..errors import BadInput, CodecUnavailable, EnhanceError

SUBSAMPLINGS = ("4:2:0", "4:2:2", "4:4:4")

# Exceptions Pillow and its plugins raise for data they cannot decode: libavif's failures
# come as RuntimeError, and Pillow's pure-Python header parsers raise IndexError,
# KeyError, TypeError, struct.error or arithmetic errors on mangled fields.
PILLOW_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, RuntimeError, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, struct.error, Image.DecompressionBombError,
)  # fmt: skip


@runtime_checkable
class Codec(Protocol):
    """A base codec: a small class whose constructor takes keyword arguments only."""

    name: str
    quality_range: tuple[float, float]
    higher_quality_is_better: bool
    file_extension: str
    needs_container: bool

    def available(self) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, what to install or set)."""
        ...

    def encode(self, image: np.ndarray, quality: float) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class BuiltinCodec:
    """What every built-in codec shares: argument checks and refusing to run when unavailable."""

    name: ClassVar[str]
    # "classical" for hand-designed transforms, "neural" for learned ones.
    family: ClassVar[str]
    quality_range: ClassVar[tuple[float, float]]
    higher_quality_is_better: ClassVar[bool]
    # What the quality knob measures, for people: "quality", "QP", "PSNR dB", ...
    quality_unit: ClassVar[str] = "quality"
    # What `-q` means, in the terms of the format's own tools, for `enhance codecs`.
    quality_meaning: ClassVar[str] = ""
    file_extension: ClassVar[str]
    needs_container: ClassVar[bool] = False
    # Most knobs are integers (quality, QP, model index); a few are continuous (dB, distance).
    integer_quality: ClassVar[bool] = True

    def available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def _require_available(self) -> None:
        usable, reason = self.available()
        if not usable:
            raise CodecUnavailable(f"codec {self.name} is unavailable: {reason}")

    def _checked_quality(self, quality: float) -> float:
        low, high = self.quality_range
        try:
            value = float(quality)
        except (TypeError, ValueError):
            raise EnhanceError(f"codec {self.name}: quality must be a number, got {quality!r}") from None
        if not low <= value <= high:
            raise EnhanceError(f"codec {self.name}: quality {quality} is outside {low:g}..{high:g}")
        if self.integer_quality and not value.is_integer():
            raise EnhanceError(f"codec {self.name}: quality must be a whole number, got {quality}")
        return value

    def _checked_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise BadInput(f"codec {self.name}: expected a uint8 HxWx3 RGB array, got {dtype} {shape}")
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise BadInput(f"codec {self.name}: the image is empty ({image.shape[1]}x{image.shape[0]})")
        return np.ascontiguousarray(image)

    def _checked_bytes(self, data: bytes) -> bytes:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BadInput(f"codec {self.name}: expected bytes to decode, got {type(data).__name__}")
        if len(data) == 0:
            raise BadInput(f"codec {self.name}: nothing to decode (0 bytes)")
        return bytes(data)

    def __repr__(self) -> str:
        return f"<codec {self.name}>"


def check_pixel_count(width: int, height: int, codec_name: str) -> None:
    """The size a stream declares, checked against enhance's one pixel limit (`enhance.limits`) before decoding."""
    limits.check_pixels(width, height, f"codec {codec_name}")


def checked_subsampling(codec_name: str, subsampling: str) -> str:
    if subsampling not in SUBSAMPLINGS:
        raise EnhanceError(
            f"codec {codec_name}: subsampling must be one of {', '.join(SUBSAMPLINGS)}, got {subsampling!r}"
        )
    return subsampling


def rgb_array(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image as a fresh uint8 HxWx3 array (grey, palette, alpha and CMYK converted)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def decode_with_pillow(data: bytes, pillow_format: str, codec_name: str) -> np.ndarray:
    """Decodes `data`, accepting only `pillow_format`; anything else is BadInput.

    The size the header declares is checked against the pixel limit before decoding.
    """
    try:
        try:
            image = limits.open_with_pillow(data, [pillow_format])
        except UnidentifiedImageError:
            from ..image import unidentified_reason

            raise BadInput(f"codec {codec_name}: cannot decode {len(data)} bytes as {pillow_format}: {unidentified_reason(data)}") from None
        with image:
            check_pixel_count(*image.size, codec_name)
            image.load()
            return rgb_array(image)
    except PILLOW_DECODE_ERRORS as error:
        raise BadInput(f"codec {codec_name}: cannot decode {len(data)} bytes as {pillow_format}: {error}") from None


class PillowCodec(BuiltinCodec):
    """A codec Pillow encodes and decodes itself."""

    family = "classical"
    pillow_format: ClassVar[str]
    # The name `PIL.features.check` knows the codec by.
    pillow_feature: ClassVar[str]

    def available(self) -> tuple[bool, str]:
        from PIL import features

        if features.check(self.pillow_feature):
            return True, ""
        return False, f"this Pillow was built without {self.pillow_format} support; install Pillow's PyPI wheel (pip install -U pillow)"

    def _save_options(self, quality: float) -> dict:
        raise NotImplementedError

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        self._require_available()
        options = self._save_options(self._checked_quality(quality))
        pixels = self._checked_image(image)
        buffer = io.BytesIO()
        try:
            Image.fromarray(pixels).save(buffer, format=self.pillow_format, **options)
        except (OSError, ValueError) as error:
            height, width = pixels.shape[:2]
            raise EnhanceError(f"codec {self.name}: cannot encode a {width}x{height} image: {error}") from None
        return buffer.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        self._require_available()
        return decode_with_pillow(self._checked_bytes(data), self.pillow_format, self.name)


def find_executable(configured: str | None, env_var: str, default_name: str) -> tuple[str | None, str]:
    """The path of an executable: `configured`, else $`env_var`, else `default_name` on PATH.

    Returns (path, "") or (None, why it was not found).
    """
    if configured is None:
        configured = os.environ.get(env_var) or None
        origin = f"{env_var}={configured}"
    else:
        origin = repr(configured)
    if configured is not None:
        found = shutil.which(configured)
        if found is None:
            return None, f"{origin} is not an executable file"
        return found, ""
    found = shutil.which(default_name)
    if found is None:
        return None, f"{default_name} is not on PATH; install it or set {env_var} to its path"
    return found, ""


def run_executable(command: list, codec_name: str, failure: type[EnhanceError]) -> None:
    """Runs an external encoder or decoder, keeping its output; a failure raises `failure`."""
    command = [str(part) for part in command]
    try:
        completed = subprocess.run(command, capture_output=True, check=False)
    except OSError as error:
        raise CodecUnavailable(f"codec {codec_name}: cannot run {command[0]}: {error}") from None
    if completed.returncode != 0:
        output = (completed.stderr.strip() or completed.stdout.strip()).decode("utf-8", errors="replace")
        raise failure(
            f"codec {codec_name}: {os.path.basename(command[0])} failed with exit status {completed.returncode}: "
            f"{output[-500:] or 'no output'}"
        )
