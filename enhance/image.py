"""Reading and writing images with their metadata (EXIF, ICC profile, XMP).

`load_image` returns the pixels exactly as stored (orientation not applied) as uint8
HxWx3 RGB, the original bytes, and the metadata; `apply_orientation` turns stored
pixels into displayed pixels, and `Metadata.for_oriented_pixels` resets the
orientation tags to match, so orientation is applied exactly once. `save_image`
writes atomically: a temporary file in the destination directory, fsync, rename.

The EXIF orientation is read and reset by a small bounds-checked parser of IFD0 that
patches the one value in place, so everything else in the EXIF block (maker notes
with absolute offsets included) is kept byte for byte.
"""

from __future__ import annotations

import html
import io
import os
import re
import secrets
import struct
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin, UnidentifiedImageError

from . import limits
from .errors import BadInput

# Exceptions Pillow and its plugins raise for data they cannot decode (libavif's come as
# RuntimeError; Pillow's header parsers raise IndexError, KeyError, struct.error, ...).
PILLOW_DECODE_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, RuntimeError, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, struct.error,
)  # fmt: skip

# None means the one pixel limit of `enhance.limits` (ENHANCE_MAX_MEGAPIXELS, default
# 150 MP), read when a file is decoded; callers pass a number only to override it.
DEFAULT_MAX_PIXELS: int | None = None

# Temporary files are hidden and carry this suffix, so they are never mistaken for
# outputs and a later run can find and remove the ones a killed run left behind.
TEMP_SUFFIX = ".enhance-tmp"

OUTPUT_FORMATS = {"png": ".png", "webp": ".webp", "jpeg": ".jpg", "tiff": ".tif"}
EXTENSION_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff"}

JPEG_OUTPUT_QUALITY = 95
ORIENTATION_TAG = 0x0112
XMP_TIFF_TAG = 700
EXIF_HEADER = b"Exif\x00\x00"

# TIFF tags that describe the pixel data itself. A JPEG's EXIF IFD0 may carry some of
# them (for the original camera image); copied into a TIFF they would describe the
# wrong strips, so they are dropped when EXIF is written into a TIFF.
TIFF_STRUCTURE_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339, 513, 514, 530, 531, 532}
)


def checked_rgb(pixels, what: str, *, error: type[Exception] = BadInput, shape: tuple | None = None) -> np.ndarray:
    """`pixels` when it is a uint8 HxWx3 array (of `shape`, when given), else `error` naming `what`.

    The one check for the image that crosses every boundary (codecs, enhancers, metrics, the API).
    """
    if isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3:
        if shape is None or pixels.shape == tuple(shape):
            return pixels
    described = f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
    expected = "HxWx3" if shape is None else "x".join(map(str, shape))
    raise error(f"{what}: expected a uint8 {expected} array, got {described}")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


def find_images(roots: list[Path]) -> list[Path]:
    """Image files under `roots` (files are taken as they are; folders walked in name order, by suffix)."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.append(root)
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such file or directory")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            found.extend(Path(dirpath) / f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise FileNotFoundError(f"no images under {', '.join(map(str, roots))}")
    return found



@dataclass(frozen=True)
class Metadata:
    """What travels with the pixels. `exif` is the raw TIFF-structured block (with or without "Exif\\0\\0")."""

    exif: bytes | None = None
    icc_profile: bytes | None = None
    xmp: bytes | None = None

    @property
    def orientation(self) -> int:
        return exif_orientation(self.exif)

    @property
    def description(self) -> str | None:
        """The image's own caption: XMP dc:description, else EXIF ImageDescription; None without one."""
        return _xmp_description(self.xmp) or _exif_description(self.exif)

    def for_oriented_pixels(self) -> "Metadata":
        """The same metadata with EXIF and XMP orientation reset to 1, for pixels `apply_orientation` has turned."""
        return replace(self, exif=_exif_with_orientation_reset(self.exif), xmp=_xmp_with_orientation_reset(self.xmp))


@dataclass(frozen=True)
class LoadedImage:
    path: Path
    data: bytes
    format: str  # Pillow's format name: "JPEG", "PNG", ...
    mode: str  # the file's colour mode as Pillow reports it: "RGB", "L", "CMYK", ...
    pixels: np.ndarray  # uint8 HxWx3 RGB as stored, orientation not applied
    orientation: int
    metadata: Metadata

    @property
    def greyscale(self) -> bool:
        return Image.getmodebase(self.mode) == "L"


def load_image(path: Path | str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Reads and decodes `path`; any reason it cannot be used raises BadInput naming the file."""
    return decode_image(read_file(path), path=path, max_pixels=max_pixels)


def read_file(path: Path | str) -> bytes:
    """A regular file's bytes, within the size bound; FIFOs, devices and symlink loops fail (`enhance.safe_read`)."""
    from .safe_read import read_regular_file

    return read_regular_file(path)


def decode_image(data: bytes, *, path: Path | str, max_pixels: int | None = DEFAULT_MAX_PIXELS, scale: int = 1) -> LoadedImage:
    """As `load_image`, for a file's bytes already read; `path` names the file in errors.

    `scale` 2, 4 or 8 asks libjpeg for a DCT-scaled decode of a JPEG (`Image.draft`): each
    side 1/scale as long, rounded up, decoded from fewer coefficients and so much faster.
    Such pixels are a preview, not what a JPEG enhancer is trained on (see `enhance.preview`).
    Other formats, and JPEGs libjpeg cannot scale, decode at full size; compare `pixels.shape`.
    """
    path = Path(path)
    if not data:
        raise BadInput(f"{path}: empty file (0 bytes)")
    limit = limits.max_pixels(max_pixels)
    try:
        # Headers only; the pixel limit is checked before any pixel is decoded.
        image = limits.open_with_pillow(data)
        width, height = image.size
        limits.check_pixels(width, height, str(path), limit)
        if scale > 1:
            image.draft(image.mode, (max(1, width // scale), max(1, height // scale)))
        image.load()
    except BadInput:
        raise
    except Image.DecompressionBombError:
        raise BadInput(f"{path}: its header claims a size over Pillow's pixel limit (a possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise BadInput(f"{path}: {unidentified_reason(data)}") from None
    except PILLOW_DECODE_ERRORS as error:
        reason = str(error) or type(error).__name__
        raise BadInput(f"{path}: cannot decode the {image_format_name(data)} data ({reason}); the file is truncated or corrupt") from None

    exif = image.info.get("exif") or None
    icc_profile = image.info.get("icc_profile") or None
    xmp = image.info.get("xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    orientation = exif_orientation(exif) if exif else _orientation_tag(image)
    pixels, icc_profile = _to_rgb(image, icc_profile, path)
    return LoadedImage(
        path=path,
        data=data,
        # Pillow calls a JPEG with an MP extension (camera previews, depth maps) "MPO";
        # its first image, the one decoded, is an ordinary JPEG.
        format="JPEG" if image.format == "MPO" else image.format or "unknown",
        mode=image.mode,
        pixels=pixels,
        orientation=orientation,
        metadata=Metadata(exif=exif, icc_profile=icc_profile, xmp=xmp),
    )


# Shorter than any image file: the smallest valid JPEG, PNG or WebP is longer than this.
TOO_SHORT_BYTES = 16


def unidentified_reason(data: bytes) -> str:
    """Why Pillow recognised no image in `data`, as precisely as the bytes allow."""
    if data[:2] == b"\xff\xd8":
        if len(data) < TOO_SHORT_BYTES:
            return f"a truncated JPEG: only {len(data)} bytes"
        from .jpeg import inspect_jpeg

        try:
            info = inspect_jpeg(data)
        except BadInput as error:
            return f"a JPEG that cannot be decoded ({str(error).split(': ', 1)[-1]})"
        if info.precision != 8:
            return f"a {info.precision}-bit JPEG; only 8-bit JPEGs are supported (convert it to 8 bits first)"
        return "a JPEG that cannot be decoded"
    if len(data) < TOO_SHORT_BYTES:
        return f"not an image: only {len(data)} bytes, too short for any image format"
    return "not an image (no known image format recognised)"


def image_format_name(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    return "image"


def _orientation_tag(image: Image.Image) -> int:
    # Formats without an EXIF block (TIFF) keep the orientation as an ordinary tag.
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image, icc_profile: bytes | None, path: Path) -> tuple[np.ndarray, bytes | None]:
    """uint8 HxWx3 RGB pixels, and the ICC profile that describes them (None if it no longer does)."""
    if image.mode == "RGB":
        return np.asarray(image), icc_profile
    if image.mode == "L":
        return np.repeat(np.asarray(image)[:, :, None], 3, axis=2), icc_profile
    if image.mode == "CMYK":
        if "adobe" not in image.info:
            # Pillow assumes Adobe's inverted CMYK for every JPEG; without the Adobe
            # APP14 marker the samples are stored plainly, so invert them back.
            image = Image.fromarray(255 - np.asarray(image), "CMYK")
        if icc_profile and _icc_colour_space(icc_profile) == b"CMYK":
            try:
                converted = ImageCms.profileToProfile(
                    image, ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)), ImageCms.createProfile("sRGB"), outputMode="RGB"
                )
            except (ImageCms.PyCMSError, OSError) as error:
                raise BadInput(f"{path}: its CMYK ICC profile cannot be used ({error})") from None
            return np.asarray(converted), None
        # No usable profile: the device-independent formula R = (1 - C)(1 - K).
        return np.asarray(image.convert("RGB")), None
    converted = image.convert("RGB")
    return np.asarray(converted), icc_profile if _icc_colour_space(icc_profile) == b"RGB " else None


def _icc_colour_space(icc_profile: bytes | None) -> bytes | None:
    return icc_profile[16:20] if icc_profile and len(icc_profile) >= 128 else None


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels (HxW or HxWxC) turned as EXIF orientation 1-8 says they are displayed."""
    if orientation == 2:
        turned = pixels[:, ::-1]
    elif orientation == 3:
        turned = pixels[::-1, ::-1]
    elif orientation == 4:
        turned = pixels[::-1]
    elif orientation == 5:
        turned = pixels.swapaxes(0, 1)
    elif orientation == 6:
        turned = pixels.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        turned = pixels.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        turned = pixels.swapaxes(0, 1)[::-1]
    else:
        return pixels
    return np.ascontiguousarray(turned)


# --- EXIF orientation -------------------------------------------------------------


def _orientation_entry(exif: bytes) -> tuple[int, str, str] | None:
    """(offset of the value in `exif`, struct byte order, struct value code) of IFD0's orientation, or None."""
    base = len(EXIF_HEADER) if exif.startswith(EXIF_HEADER) else 0
    tiff = memoryview(exif)[base:]
    if bytes(tiff[:4]) == b"II*\x00":
        order = "<"
    elif bytes(tiff[:4]) == b"MM\x00*":
        order = ">"
    else:
        return None
    if len(tiff) < 8:
        return None
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd < 8 or ifd + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(tiff):
            return None
        tag, value_type, value_count = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == ORIENTATION_TAG and value_count == 1 and value_type in (3, 4):  # SHORT or LONG
            return base + entry + 8, order, "H" if value_type == 3 else "I"
    return None


IMAGE_DESCRIPTION_TAG = 0x010E
# dc:description is an rdf:Alt of language alternatives; the first (x-default first, by convention) is taken.
XMP_DESCRIPTION = re.compile(rb"<dc:description\b[^>]*>.*?<rdf:li\b[^>]*>(.*?)</rdf:li>", re.DOTALL)


def _xmp_description(xmp: bytes | None) -> str | None:
    # A pattern, not an XML parser: the packet is untrusted and only this one value is wanted.
    match = XMP_DESCRIPTION.search(xmp) if xmp else None
    if match is None:
        return None
    return html.unescape(match.group(1).decode("utf-8", "replace")).strip() or None


def _exif_description(exif: bytes | None) -> str | None:
    if not exif:
        return None
    tags = Image.Exif()
    try:
        # Pillow warns on a corrupt block; for a caption that is just "no description".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tags.load(exif[len(EXIF_HEADER):] if exif.startswith(EXIF_HEADER) else exif)
    except PILLOW_DECODE_ERRORS:
        return None
    value = tags.get(IMAGE_DESCRIPTION_TAG)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    return value.strip("\x00 \t\r\n") or None


def exif_orientation(exif: bytes | None) -> int:
    """The EXIF orientation (1-8); 1 when absent, unreadable or out of range."""
    entry = _orientation_entry(exif) if exif else None
    if entry is None:
        return 1
    offset, order, code = entry
    (value,) = struct.unpack_from(order + code, exif, offset)
    return value if 1 <= value <= 8 else 1


def _exif_with_orientation_reset(exif: bytes | None) -> bytes | None:
    if not exif:
        return exif
    entry = _orientation_entry(exif)
    if entry is None:
        return exif
    offset, order, code = entry
    patched = bytearray(exif)
    struct.pack_into(order + code, patched, offset, 1)
    return bytes(patched)


_XMP_ORIENTATION = (
    re.compile(rb'(tiff:Orientation=")[0-9](")'),
    re.compile(rb"(<tiff:Orientation>)[0-9](</tiff:Orientation>)"),
)


def _xmp_with_orientation_reset(xmp: bytes | None) -> bytes | None:
    if not xmp:
        return xmp
    for pattern in _XMP_ORIENTATION:
        xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    return xmp


# --- writing ----------------------------------------------------------------------


def output_format_for(path: Path | str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSION_FORMATS:
        raise BadInput(f"{path}: unknown output extension {suffix!r}; use one of {', '.join(sorted(EXTENSION_FORMATS))}")
    return EXTENSION_FORMATS[suffix]


def encode_image(pixels: np.ndarray, metadata: Metadata = Metadata(), output_format: str = "png", *, greyscale: bool = False) -> bytes:
    """uint8 HxWx3 pixels encoded as PNG, lossless WebP, JPEG (q95, 4:4:4) or TIFF, with the metadata the format holds.

    TIFF is written uncompressed: Pillow's compressing TIFF writer (libtiff) cannot
    write EXIF's sub-IFDs (capture date, exposure, GPS), and keeping them comes first.

    `greyscale` writes one channel (ITU-R 601 luma, as JPEG's Y) where the format has it.
    An ICC profile whose colour space does not match the written pixels is left out.
    """
    checked_rgb(pixels, "pixels", error=ValueError)
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}")
    image = Image.fromarray(pixels, "RGB")
    if greyscale and output_format != "webp":  # WebP has no greyscale mode
        image = image.convert("L")
    icc_profile = metadata.icc_profile
    if _icc_colour_space(icc_profile) != (b"GRAY" if image.mode == "L" else b"RGB "):
        icc_profile = None
    if output_format == "png":
        image, icc_profile = _png_readable_profile(image, icc_profile)
    options: dict = {}
    if icc_profile:
        options["icc_profile"] = icc_profile
    exif, xmp = metadata.exif, metadata.xmp
    buffer = io.BytesIO()
    if output_format == "png":
        if exif:
            options["exif"] = exif
        if xmp:
            info = PngImagePlugin.PngInfo()
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
            options["pnginfo"] = info
        image.save(buffer, "PNG", **options)
    elif output_format == "webp":
        image.save(buffer, "WEBP", lossless=True, exif=exif or b"", xmp=xmp or b"", **options)
    elif output_format == "jpeg":
        image.save(buffer, "JPEG", quality=JPEG_OUTPUT_QUALITY, subsampling=0, exif=exif or b"", xmp=xmp or b"", **options)
    else:
        image.save(buffer, "TIFF", tiffinfo=_tiff_tags(exif, xmp), **options)
    return buffer.getvalue()


def _png_readable_profile(image: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, bytes | None]:
    """(pixels, profile) a PNG reader can open: Pillow refuses a PNG whose ICC profile is over
    `PngImagePlugin.MAX_TEXT_CHUNK` (1 MB), so a larger one is applied to the pixels (converted to
    sRGB, which is embedded instead) or, when it cannot be used, left out."""
    if not icc_profile or len(icc_profile) <= PngImagePlugin.MAX_TEXT_CHUNK:
        return image, icc_profile
    if image.mode != "RGB":
        return image, None
    try:
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        converted = ImageCms.profileToProfile(image, ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)), srgb, outputMode="RGB")
        return converted, srgb.tobytes()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image, None


def _tiff_tags(exif: bytes | None, xmp: bytes | None) -> Image.Exif:
    tags = Image.Exif()
    if exif:
        try:
            tags.load(exif)
        except (SyntaxError, ValueError, struct.error, OSError):
            tags = Image.Exif()  # unreadable EXIF: the TIFF is written without it
        for key in [key for key in tags if key in TIFF_STRUCTURE_TAGS]:
            del tags[key]
    if xmp:
        tags[XMP_TIFF_TAG] = xmp
    return tags


def save_image(
    path: Path | str,
    pixels: np.ndarray,
    metadata: Metadata = Metadata(),
    output_format: str | None = None,
    *,
    greyscale: bool = False,
) -> Path:
    """Writes `encode_image(...)` to `path` atomically; the format defaults to the one the extension names."""
    path = Path(path)
    data = encode_image(pixels, metadata, output_format or output_format_for(path), greyscale=greyscale)
    write_atomic(path, data)
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds either its old content or all of `data`, never a part, even after a crash."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}"
    # O_EXCL: never write through someone else's file; mode 0o666 lets the umask decide.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some platforms and filesystems cannot open or
    # sync a directory, and the data is already safe there.
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


def temporary_target(name: str) -> str | None:
    """The output name a temporary file from `write_atomic` was written for, or None if `name` is not one."""
    if not is_temporary(name):
        return None
    stem = name[1 : -len(TEMP_SUFFIX)]
    target, dot, token = stem.rpartition(".")
    return target if dot and len(token) == 12 else None
