import numpy as np
import pytest
import torch

from enhance.enhancers.dirac import DiracConfig, DiracUNet, DiracUNetConfig, ScheduleConfig, Thresholds
from enhance.train.dirac import save_bundle

@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny test models run ~15x faster on one thread than split across cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_MODEL = DiracUNetConfig(channels=(8, 16), blocks=(1, 1), mid_blocks=1, embed_dim=16, refine_channels=4)


def natural_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, edges and some texture: enough structure for codecs to behave as on photos."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 90 * np.sin(x / (7 + 3 * seed % 5) + y / 23),
            128 + 80 * np.cos(y / 11 - x / 31),
            100 + 60 * np.sin((x + y) / 17),
        ],
        axis=2,
    )
    base[(x // 9 + y // 13) % 2 == 0] += 25
    base += rng.normal(0, 6, size=base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def make_tiny_bundle(directory, seed: int = 0, thresholds: bool = True):
    """A random-weight DIRAC bundle, small enough to run in milliseconds."""
    torch.manual_seed(seed)
    model = DiracUNet(TINY_MODEL)
    # Zero-initialised block outputs make a fresh model nearly the identity; randomise
    # every weight so tests exercise the whole network.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    config = DiracConfig(
        codec="jpeg",
        model=TINY_MODEL,
        schedule=ScheduleConfig(),
        thresholds=Thresholds(
            percentile=99.5,
            rates=(5.0, 50.0, 90.0),
            lower=((-1.0, -1.0, -1.0), (-0.5, -0.5, -0.5), (-0.2, -0.2, -0.2)),
            upper=((1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2)),
        )
        if thresholds
        else None,
        default_steps=2,
    )
    save_bundle(directory, model, config)
    return directory


@pytest.fixture
def tiny_bundle(tmp_path):
    return make_tiny_bundle(tmp_path / "tiny-dirac")


# --- JPEG variants and broken files (archive runs, image I/O, viewer tests) ---------

import functools  # noqa: E402  (kept with the helpers that use it)

JPEG_VARIANTS = ("420", "444", "grey", "cmyk", "ycck", "progressive", "restart", "rotated", "icc", "xmp", "mpo")
BROKEN_KINDS = ("truncated", "empty", "not_image", "bomb", "png_named_jpg")

XMP_SAMPLE = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'tiff:Orientation="6" dc:format="image/jpeg"/></rdf:RDF></x:xmpmeta>'
)


@functools.lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """One sRGB profile for the session (lcms stamps each new profile with the time)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_block(orientation: int | None = None) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"
    exif[0x0110] = "Model 7"
    if orientation is not None:
        exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    exif.get_ifd(0x8825)[1] = "N"
    return exif.tobytes()


def make_jpeg(kind: str, height: int = 40, width: int = 56, seed: int = 0) -> bytes:
    """A small JPEG of one of JPEG_VARIANTS, made with real encoders (Pillow, libjpeg-turbo)."""
    import io

    import imagecodecs
    from PIL import Image

    rgb = natural_image(height, width, seed)
    if kind in ("cmyk", "ycck"):
        cmyk = np.concatenate([255 - rgb, np.full(rgb.shape[:2] + (1,), 20 * (seed % 5), np.uint8)], axis=2)
        # Adobe's convention stores CMYK inverted; libjpeg writes samples as given.
        return bytes(imagecodecs.jpeg8_encode(255 - cmyk, level=90, colorspace="CMYK", outcolorspace=kind.upper()))
    image = Image.fromarray(rgb)
    options: dict = {"quality": 50 + 7 * (seed % 6), "subsampling": 2}
    if kind == "444":
        options["subsampling"] = 0
    elif kind == "grey":
        image = image.convert("L")
    elif kind == "progressive":
        options["progressive"] = True
    elif kind == "restart":
        options["restart_marker_blocks"] = 1
    elif kind == "rotated":
        options["exif"] = exif_block(orientation=2 + seed % 7)
    elif kind == "icc":
        options["icc_profile"] = srgb_profile()
        options["exif"] = exif_block()
    elif kind == "xmp":
        options["xmp"] = XMP_SAMPLE
    elif kind != "420" and kind != "mpo":
        raise ValueError(kind)
    buffer = io.BytesIO()
    if kind == "mpo":  # a JPEG followed by a second image, as phones store depth maps and previews
        image.save(buffer, "MPO", save_all=True, append_images=[image.resize((width // 2, height // 2))], **options)
    else:
        image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def set_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """The JPEG with its frame header claiming another size (a decompression bomb's header)."""
    import struct

    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + struct.pack(">HH", height, width) + data[at + 9 :]
    raise ValueError("no frame header")


def make_broken(kind: str, seed: int = 0) -> bytes:
    import io

    from PIL import Image

    if kind == "truncated":
        data = make_jpeg("420", seed=seed)
        return data[: len(data) // 2]
    if kind == "empty":
        return b""
    if kind == "not_image":
        return b"this is a text file, not a photo\n" * (seed + 1)
    if kind == "bomb":
        return set_jpeg_size(make_jpeg("420", seed=seed), 60000, 60000)
    if kind == "png_named_jpg":
        buffer = io.BytesIO()
        Image.fromarray(natural_image(24, 24, seed)).save(buffer, "PNG")
        return buffer.getvalue()
    raise ValueError(kind)
