"""Encoding images with any registered codec and decoding whatever comes back.

Codecs with a file format of their own (JPEG, WebP, AVIF, HEIC, JPEG 2000, JPEG XL,
BPG) write it directly; the others (`needs_container`) and every full generative codec are
wrapped in `enhance.container`. Decoding asks each registered codec whether it recognises
the bytes (`Codec.recognises`) and maps names only through `enhance.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import container, image, limits, registry
from .errors import BadInput, ContainerError, EnhanceError
from .image import checked_rgb
from .codecs import decode_payload, reads_params
from .registry import native_codec

def load_display_pixels(path: Path | str) -> np.ndarray:
    """An image file's pixels as displayed (EXIF orientation applied), uint8 HxWx3."""
    return _display_pixels(image.load_image(path))


def _display_pixels(loaded: image.LoadedImage) -> np.ndarray:
    return np.ascontiguousarray(image.apply_orientation(loaded.pixels, loaded.orientation))


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    # Output paths come from the user: an unwritable one is their error to fix, not a crash.
    try:
        yield
    except OSError as error:
        raise EnhanceError(f"{path}: cannot write here ({error.strerror or error})") from None


def encode_bitstream(source: np.ndarray | Path | str, codec: str, rate, *, caption: str | None = None, **options) -> bytes:
    """Bytes of `source` encoded by `codec` at `rate` (the codec's own scale); `options` go to its constructor.

    Full codecs and base codecs without a file format of their own go in the container,
    under the container id the codec declares (`container_id`, checked against
    `container.CODEC_IDS`), with the rate as the parameter "rate" (left out for a full codec
    whose decode does not take `params`: its payload says its rate). A codec that carries a
    caption (`takes_caption`, such as PerCo) gets `caption`, else the image file's own
    description (XMP dc:description or EXIF ImageDescription); any other refuses one.
    """
    if isinstance(source, np.ndarray):
        return _encode_pixels(checked_rgb(source, "image"), codec, rate, caption, options)
    loaded = image.load_image(source)
    return _encode_pixels(_display_pixels(loaded), codec, rate, caption, options, metadata=loaded.metadata)


def _encode_pixels(
    pixels: np.ndarray, codec: str, rate, caption: str | None, options: dict, metadata: image.Metadata | None = None
) -> bytes:
    """The one place a codec is built and given its image (and caption); `metadata` is the source file's."""
    kind = registry.codec_kind(codec)
    instance = registry.create(kind, codec, **options)
    if getattr(instance, "takes_caption", False):
        if caption is None and metadata is not None:
            caption = metadata.description
        payload = instance.encode(pixels, rate, caption=caption)
    elif caption is not None:
        raise EnhanceError(f"{codec} carries no caption (a caption is for codecs such as perco)")
    else:
        payload = instance.encode(pixels, rate)
    if kind == "codec" and not instance.needs_container:
        return payload
    height, width = pixels.shape[:2]
    codec_id = container.checked_codec_id(codec, getattr(instance, "container_id", None))
    # A full codec's payload holds its own rate; PerCo's whole file is ~150 bytes, so the 8 bytes
    # of a parameter nobody reads are left out.
    unread = kind == "full_codec" and not reads_params(instance)
    params = b"" if unread else container.encode_params({"rate": str(rate)})
    return container.pack(codec, width, height, payload, params=params, codec_id=codec_id)


def decode_bitstream(data: bytes, *, steps: int | None = None, seed: int = 0, source: str = "input") -> np.ndarray:
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
            known = ", ".join(n for n, f in registry.factories("codec").items() if not getattr(f, "needs_container", True))
            raise BadInput(f"neither an enhance container nor a known image format ({known})")
        return checked_rgb(registry.get_codec(name).decode(bytes(data)), f"{name} output")
    except BadInput as error:
        raise type(error)(f"{source}: {error}") from None


def _decode_container(parsed: container.Container, *, steps: int | None, seed: int, source: str) -> np.ndarray:
    """Decodes a container's payload; its parameters reach a `decode` that takes `params`."""
    # The size the header declares, before the codec is built or any payload decoded.
    limits.check_pixels(parsed.width, parsed.height, "container")
    kind, factory = registry.container_codec(parsed.codec, source=source)
    instance = factory()
    params = container.decode_params(parsed.params)
    pixels = decode_payload(instance, parsed.payload, full=kind == "full_codec", steps=steps, seed=seed, params=params)
    checked_rgb(pixels, f"{parsed.codec} output")
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
    # samefile: a hard link or symlink to the input is the input; never raises on symlink loops.
    from .outputs import same_file

    if dst.exists() and same_file(src, dst):
        raise BadInput(f"{dst}: refusing to overwrite the input file")


# Other names a format's files go by, beside the codec's own `file_extension`.
EXTENSION_ALIASES = {".jpg": (".jpeg", ".jpe", ".jfif"), ".heic": (".heif",), ".jp2": (".jpx",)}


def expected_extensions(codec: str) -> tuple[str, ...]:
    """The file extensions `encode` may write `codec`'s output under: its format's, or .enh for the container."""
    kind = registry.codec_kind(codec)
    factory = registry.factory(kind, codec)
    own = getattr(factory, "file_extension", None)
    if kind != "codec" or getattr(factory, "needs_container", False) or not own:
        own = ".enh"
    return (own, *EXTENSION_ALIASES.get(own, ()))


def _check_extension(codec: str, dst: Path) -> None:
    # Writing WebP bytes into x.png makes a file every viewer misreads: refuse, naming the fix.
    allowed = expected_extensions(codec)
    if dst.suffix.lower() not in allowed:
        raise BadInput(f"{dst}: -c {codec} writes {allowed[0]} files; name the output {dst.with_suffix(allowed[0]).name}")


def encode_file(src: Path | str, codec: str, rate, dst: Path | str, *, caption: str | None = None, **options) -> Encoded:
    """Encodes image file `src` with `codec` at `rate` into `dst` (whose extension must be the codec's); see `encode_bitstream`."""
    src, dst = Path(src), Path(dst)
    _refuse_overwrite(src, dst)
    _check_extension(codec, dst)
    loaded = image.load_image(src)
    pixels = _display_pixels(loaded)
    data = _encode_pixels(pixels, codec, rate, caption, options, metadata=loaded.metadata)
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
    pixels = decode_bitstream(image.read_file(src), steps=steps, seed=seed, source=str(src))
    with _writing(dst):
        image.save_image(dst, pixels, output_format=output_format)
    return pixels
