"""The codec protocol, and what the built-in codecs share.

A codec turns a uint8 HxWx3 RGB array into bytes and back. Its *rate* is the one knob
`encode` takes, in the codec's own unit `rate_unit` (a JPEG quality, a QP, a target PSNR,
a Butteraugli distance, a model index) over `rate_range`; `higher_rate_is_better` says
which way it goes. "Rate" is the word every protocol uses for that knob (full codecs and
enhancers too); the command line keeps `-q/--quality` for it.

`available()` is a classmethod: `Codec.available()` answers for the codec's default
options (from the environment), without building one and without raising. Codecs whose
constructor options change the answer (paths to binaries) also answer for an instance's
own options when called on it (`class_or_instance_method`). `encode`/`decode` raise
`CodecUnavailable` (saying what to install) when it answers False, and `decode` raises
`BadInput` for bytes it cannot decode.

A codec whose bytes have no file format of its own (`needs_container`) is stored in the
enhance container; the others can be written to a file with `file_extension`, and
recognise their own files: the classmethod `recognises(head)` says whether bytes (at
least their first 64) are in the codec's format, so decoding needs no table of magic
bytes and a plugin's own format decodes as the built-ins do.
"""

from __future__ import annotations

import functools
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
from ..image import checked_rgb

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
    rate_range: tuple[float, float]
    rate_unit: str
    higher_rate_is_better: bool
    file_extension: str
    needs_container: bool

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, what to install or set)."""
        ...

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        """Whether `head` (a file's first bytes) is in this codec's own file format; False if it has none."""
        ...

    def encode(self, image: np.ndarray, rate: float) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


class class_or_instance_method:
    """A method bound to the instance when called on one, else to the class: how `available`
    answers for the default options (`Codec.available()`) and for an instance's own.

    The wrapped function receives the class or the instance; it reads options as
    attributes, whose class-level values are the defaults.
    """

    def __init__(self, function):
        self.function = function
        functools.update_wrapper(self, function)

    def __get__(self, instance, owner):
        return functools.partial(self.function, instance if instance is not None else owner)


class BuiltinCodec:
    """What every built-in codec shares: argument checks and refusing to run when unavailable."""

    name: ClassVar[str]
    # "classical" for hand-designed transforms, "neural" for learned ones.
    family: ClassVar[str]
    rate_range: ClassVar[tuple[float, float]]
    higher_rate_is_better: ClassVar[bool]
    # What the quality knob measures, for people: "quality", "QP", "PSNR dB", ...
    rate_unit: ClassVar[str] = "quality"
    # What `-q` means, in the terms of the format's own tools, for `enhance codecs`.
    rate_meaning: ClassVar[str] = ""
    file_extension: ClassVar[str]
    needs_container: ClassVar[bool] = False
    # Most knobs are integers (quality, QP, model index); a few are continuous (dB, distance).
    integer_rate: ClassVar[bool] = True

    @classmethod
    def available(cls) -> tuple[bool, str]:
        raise NotImplementedError

    @classmethod
    def recognises(cls, head: bytes) -> bool:
        return False

    def _require_available(self) -> None:
        usable, reason = self.available()
        if not usable:
            raise CodecUnavailable(f"codec {self.name} is unavailable: {reason}")

    def _checked_rate(self, rate: float) -> float:
        low, high = self.rate_range
        unit = self.rate_unit
        try:
            value = float(rate)
        except (TypeError, ValueError):
            raise EnhanceError(f"codec {self.name}: {unit} must be a number, got {rate!r}") from None
        if not low <= value <= high:
            raise EnhanceError(f"codec {self.name}: {unit} {rate} is outside {low:g}..{high:g}")
        if self.integer_rate and not value.is_integer():
            raise EnhanceError(f"codec {self.name}: {unit} must be a whole number, got {rate}")
        return value

    def _checked_image(self, image: np.ndarray) -> np.ndarray:
        checked_rgb(image, f"codec {self.name}")
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


def iso_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box at the start of a file (empty if none)."""
    if head[4:8] != b"ftyp":
        return set()
    size = int.from_bytes(head[:4], "big")
    box = head[8 : min(size, len(head))]
    return {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}


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

    @classmethod
    def available(cls) -> tuple[bool, str]:
        from PIL import features

        if features.check(cls.pillow_feature):
            return True, ""
        return False, f"this Pillow was built without {cls.pillow_format} support; install Pillow's PyPI wheel (pip install -U pillow)"

    def _save_options(self, rate: float) -> dict:
        raise NotImplementedError

    def encode(self, image: np.ndarray, rate: float) -> bytes:
        self._require_available()
        options = self._save_options(self._checked_rate(rate))
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
