"""Encoding images with any registered codec and decoding whatever comes back.

Codecs with a file format of their own (JPEG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL,
BPG) write it directly; the others (`needs_container`) and every full generative codec are
wrapped in `enhance.container`. Decoding tells the two apart by magic bytes and maps
names only through `enhance.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import container, image, limits, registry
from .errors import BadInput, ContainerError, EnhanceError

AVIF_BRANDS = {b"avif", b"avis"}
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1"}


def _iso_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box at the start of a file."""
    size = int.from_bytes(head[:4], "big")
    box = head[8 : min(size, len(head))]
    return {box[:4]} | {box[i : i + 4] for i in range(8, len(box) - 3, 4)}


def native_codec(data: bytes) -> str | None:
    """The registered codec whose own file format `data` is in (by magic bytes), or None."""
    head = bytes(data[:64])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        # AVIF and HEIC are both HEIF files; libavif lists `mif1` too, so AVIF is tested first.
        brands = _iso_brands(head)
        return "avif" if brands & AVIF_BRANDS else "heic" if brands & HEIC_BRANDS else None
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "jpeg2000"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "jxl"
    if head.startswith(b"BPG\xfb"):
        return "bpg"
    return None


def load_image(path: Path | str) -> np.ndarray:
    """An image file's pixels as displayed (EXIF orientation applied), uint8 HxWx3."""
    loaded = image.load_image(path)
    return np.ascontiguousarray(image.apply_orientation(loaded.pixels, loaded.orientation))


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    # Output paths come from the user: an unwritable one is their error to fix, not a crash.
    try:
        yield
    except OSError as error:
        raise EnhanceError(f"{path}: cannot write here ({error.strerror or error})") from None


def _check_pixels(pixels: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        found = f"{getattr(pixels, 'dtype', type(pixels).__name__)} {getattr(pixels, 'shape', '')}"
        raise BadInput(f"{what}: expected a uint8 HxWx3 array, got {found}")
    return pixels


def _codec(name: str, options: dict) -> tuple[str, object]:
    """("codec" | "full_codec", instance) for a codec name typed by the user."""
    # A base codec wins when a full codec shares its name, as in `registry.container_codec`.
    kind = "codec"
    if name not in registry.factories("codec") and name in registry.factories("full_codec"):
        kind = "full_codec"
    return kind, registry.create(kind, name, **options)


def encode_image(source: np.ndarray | Path | str, codec: str, quality, **options) -> bytes:
    """Bytes of `source` encoded by `codec` at `quality` (the codec's own scale); `options` go to its constructor."""
    pixels = _check_pixels(source, "image") if isinstance(source, np.ndarray) else load_image(source)
    kind, instance = _codec(codec, options)
    payload = instance.encode(pixels, quality)
    if kind == "codec" and not instance.needs_container:
        return payload
    height, width = pixels.shape[:2]
    params = container.encode_params({"quality": str(quality)})
    return container.pack(codec, width, height, payload, params=params)


def decode_bytes(data: bytes, *, steps: int | None = None, seed: int = 0, source: str = "input") -> np.ndarray:
    """Pixels (uint8 HxWx3) of a container or a native image file; `steps`/`seed` reach full codecs only.

    `source` names the data (its file) in error messages.
    """
    try:
        if container.is_container(data):
            return _decode_container(container.unpack(data), steps=steps, seed=seed, source=source)
        name = native_codec(data)
        if name is None and len(data) < image.TOO_SHORT_BYTES:
            raise BadInput(f"not an image or an enhance container: only {len(data)} bytes, too short for either")
        if name is None:
            raise BadInput(
                "neither an enhance container nor a known image format (JPEG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL, BPG)"
            )
        return _check_pixels(registry.get_codec(name).decode(bytes(data)), f"{name} output")
    except BadInput as error:
        raise type(error)(f"{source}: {error}") from None


def _decode_container(parsed: container.Container, *, steps: int | None, seed: int, source: str) -> np.ndarray:
    # The size the header declares, before the codec is built or any payload decoded.
    limits.check_pixels(parsed.width, parsed.height, "container")
    kind, factory = registry.container_codec(parsed.codec, source=source)
    instance = factory()
    if kind == "full_codec":
        pixels = instance.decode(parsed.payload, steps=steps, seed=seed)
    else:
        pixels = instance.decode(parsed.payload)
    _check_pixels(pixels, f"{parsed.codec} output")
    if pixels.shape[:2] != (parsed.height, parsed.width):
        decoded = f"{pixels.shape[1]}x{pixels.shape[0]}"
        raise ContainerError(f"{parsed.codec} decoded {decoded} pixels, the header says {parsed.width}x{parsed.height}")
    return pixels


@dataclass(frozen=True)
class Encoded:
    """What `encode_file` wrote: sizes in bytes and the bits per pixel they make."""

    path: Path
    codec: str
    width: int
    height: int
    file_bytes: int
    payload_bytes: int | None  # the codec's own bytes inside a container; None for native formats

    @property
    def file_bpp(self) -> float:
        return 8 * self.file_bytes / (self.width * self.height)

    @property
    def payload_bpp(self) -> float | None:
        return None if self.payload_bytes is None else 8 * self.payload_bytes / (self.width * self.height)


def _refuse_overwrite(src: Path, dst: Path) -> None:
    if dst.exists() and dst.resolve() == src.resolve():
        raise BadInput(f"{dst}: refusing to overwrite the input file")


def encode_file(src: Path | str, codec: str, quality, dst: Path | str, **options) -> Encoded:
    src, dst = Path(src), Path(dst)
    _refuse_overwrite(src, dst)
    pixels = load_image(src)
    data = encode_image(pixels, codec, quality, **options)
    with _writing(dst):
        image.write_atomic(dst, data)
    height, width = pixels.shape[:2]
    payload = len(container.unpack(data).payload) if container.is_container(data) else None
    return Encoded(path=dst, codec=codec, width=width, height=height, file_bytes=len(data), payload_bytes=payload)


def decode_file(src: Path | str, dst: Path | str, *, steps: int | None = None, seed: int = 0) -> np.ndarray:
    """Decodes `src` and writes the pixels to image file `dst`; returns the pixels."""
    src, dst = Path(src), Path(dst)
    _refuse_overwrite(src, dst)
    output_format = image.output_format_for(dst)
    pixels = decode_bytes(image.read_file(src), steps=steps, seed=seed, source=str(src))
    with _writing(dst):
        image.save_image(dst, pixels, output_format=output_format)
    return pixels
