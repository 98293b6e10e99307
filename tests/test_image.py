import io
import itertools
import struct

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image, ImageOps

from conftest import (
    JPEG_VARIANTS,
    XMP_SAMPLE,
    exif_block,
    make_broken,
    make_jpeg,
    natural_image,
    set_jpeg_size,
    srgb_profile,
)
from enhance.errors import BadInput
from enhance.image import (
    OUTPUT_FORMATS,
    TEMP_SUFFIX,
    Metadata,
    apply_orientation,
    encode_image,
    exif_orientation,
    load_image,
    save_image,
    temporary_target,
    write_atomic,
)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", JPEG_VARIANTS)
def test_every_variant_decodes_to_rgb_close_to_its_source(tmp_path, kind):
    path = write(tmp_path, f"{kind}.jpg", make_jpeg(kind, 33, 47, seed=1))
    loaded = load_image(path)
    assert loaded.format == "JPEG"
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (33, 47, 3)
    source = natural_image(33, 47, seed=1)
    if kind == "grey":
        source = np.repeat(np.asarray(Image.fromarray(source).convert("L"))[..., None], 3, axis=2)
    elif kind in ("cmyk", "ycck"):
        source = (source.astype(np.float64) * (255 - 20) / 255).round()  # K = 20 at seed 1
    assert psnr(loaded.pixels, source) > 24, kind
    assert loaded.greyscale == (kind == "grey")
    assert loaded.data == path.read_bytes()


def test_greyscale_is_replicated_and_written_back_as_one_channel(tmp_path):
    loaded = load_image(write(tmp_path, "g.jpg", make_jpeg("grey")))
    assert loaded.mode == "L"
    assert (loaded.pixels[..., 0] == loaded.pixels[..., 1]).all() and (loaded.pixels[..., 1] == loaded.pixels[..., 2]).all()
    for output_format in ("png", "jpeg", "tiff"):
        written = Image.open(io.BytesIO(encode_image(loaded.pixels, loaded.metadata, output_format, greyscale=True)))
        assert written.mode == "L", output_format
    # WebP has no greyscale mode: written as RGB with equal channels.
    webp = np.asarray(Image.open(io.BytesIO(encode_image(loaded.pixels, output_format="webp", greyscale=True))))
    assert (webp[..., 0] == webp[..., 2]).all()


def _cmyk_jpeg(cmyk, *, outcolorspace="CMYK", icc_profile=None, adobe=True):
    import imagecodecs

    data = bytes(imagecodecs.jpeg8_encode(255 - cmyk, level=95, colorspace="CMYK", outcolorspace=outcolorspace))
    if not adobe:
        at = data.index(b"\xff\xee")  # APP14 "Adobe"
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        data = data[:at] + data[at + 2 + length :]
    if icc_profile is not None:
        image = Image.open(io.BytesIO(data))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95, icc_profile=icc_profile)
        data = buffer.getvalue()
    return data


PURE_INKS = np.array([[[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0], [0, 0, 0, 128]]], np.uint8)
PURE_INKS_RGB = np.array([[[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255], [127, 127, 127]]])


@pytest.mark.parametrize("outcolorspace", ["CMYK", "YCCK"])
def test_adobe_cmyk_and_ycck_inks_become_the_right_rgb(tmp_path, outcolorspace):
    inks = np.repeat(np.repeat(PURE_INKS, 16, axis=0), 16, axis=1)
    loaded = load_image(write(tmp_path, "inks.jpg", _cmyk_jpeg(inks, outcolorspace=outcolorspace)))
    assert loaded.mode == "CMYK"
    centres = loaded.pixels[8, 8::16].astype(int)
    assert np.abs(centres - PURE_INKS_RGB).max() <= 4


def test_cmyk_without_the_adobe_marker_is_not_inverted(tmp_path):
    inks = np.repeat(np.repeat(PURE_INKS, 16, axis=0), 16, axis=1)
    # A non-Adobe CMYK file stores ink amounts plainly: 255 - (Adobe's inverted values).
    data = _cmyk_jpeg(255 - inks, adobe=False)
    assert b"\xff\xee" not in data
    loaded = load_image(write(tmp_path, "plain.jpg", data))
    assert np.abs(loaded.pixels[8, 8::16].astype(int) - PURE_INKS_RGB).max() <= 4


def _s15(value):
    return struct.pack(">i", round(value * 65536))


def cmyk_printer_profile():
    """A minimal ICC v2 CMYK profile whose A2B0 lut maps pure cyan to Lab(70, -40, -40), not sRGB cyan."""
    clut = bytearray()
    for c, m, y, k in itertools.product((0, 1), repeat=4):
        lab = (0, 0, 0) if k else (100 - 30 * c - 30 * m - 10 * y, -40 * c + 50 * m, -40 * c - 20 * m + 60 * y)
        clut += bytes([round(lab[0] * 2.55), round(lab[1] + 128), round(lab[2] + 128)])
    ramp = bytes(range(256))
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    text = b"test CMYK\0"
    tags = [
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(8 + 2 + 1 + 67)),
        (b"wtpt", b"XYZ " + bytes(4) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)),
        (b"A2B0", b"mft1" + bytes(4) + bytes([4, 3, 2, 0]) + identity + ramp * 4 + bytes(clut) + ramp * 3),
        (b"cprt", b"text" + bytes(4) + b"none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table = data = b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    header = (
        struct.pack(">I", offset + len(data)) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"prtrCMYKLab " + bytes(12)
        + b"acsp" + bytes(28) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + data


def test_cmyk_with_an_embedded_profile_is_converted_through_it(tmp_path):
    profile = cmyk_printer_profile()
    inks = np.repeat(np.repeat(PURE_INKS, 16, axis=0), 16, axis=1)
    loaded = load_image(write(tmp_path, "profiled.jpg", _cmyk_jpeg(inks, icc_profile=profile)))
    cyan, white, black = (loaded.pixels[8, 8 + 16 * i].astype(int) for i in (0, 4, 3))
    # The profile's cyan is a lighter, bluer one than the naive (0, 255, 255).
    assert cyan[0] < 20 and cyan[1] < 215 and cyan[2] > 225
    assert (white > 245).all() and (black < 10).all()
    # The pixels are sRGB now; the CMYK profile no longer describes them.
    assert loaded.metadata.icc_profile is None


# --- orientation --------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_and_is_applied_exactly_once(tmp_path, orientation):
    stored = natural_image(24, 40, seed=3)
    stored[:4, :8] = (255, 0, 0)  # a marked corner makes every turn distinguishable
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "PNG", exif=exif_block(orientation=orientation))
    path = write(tmp_path, "turned.png", buffer.getvalue())

    loaded = load_image(path)
    assert loaded.orientation == orientation
    displayed = apply_orientation(loaded.pixels, orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(displayed, expected)

    for output_format in OUTPUT_FORMATS:
        out = save_image(tmp_path / f"out-{orientation}{OUTPUT_FORMATS[output_format]}", displayed, loaded.metadata.for_oriented_pixels())
        reopened = Image.open(out)
        assert reopened.getexif().get(0x0112, 1) == 1, output_format
        again = np.asarray(ImageOps.exif_transpose(reopened).convert("RGB"))
        assert again.shape == displayed.shape, output_format
        if output_format != "jpeg":
            np.testing.assert_array_equal(again, displayed)


def test_apply_orientation_works_on_one_channel_images():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(apply_orientation(grey, 6), np.rot90(grey, -1))
    np.testing.assert_array_equal(apply_orientation(grey, 8), np.rot90(grey, 1))


# --- metadata round trips -------------------------------------------------------------


@pytest.mark.parametrize("output_format", list(OUTPUT_FORMATS))
def test_exif_icc_and_xmp_survive_every_output_format(tmp_path, output_format):
    source = Image.fromarray(natural_image(33, 47, seed=2))
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", quality=80, exif=exif_block(orientation=6), icc_profile=srgb_profile(), xmp=XMP_SAMPLE)
    loaded = load_image(write(tmp_path, "in.jpg", buffer.getvalue()))
    assert loaded.metadata.icc_profile == srgb_profile() and loaded.metadata.xmp == XMP_SAMPLE

    displayed = apply_orientation(loaded.pixels, loaded.orientation)
    out = save_image(tmp_path / f"out{OUTPUT_FORMATS[output_format]}", displayed, loaded.metadata.for_oriented_pixels())
    written = Image.open(out)
    assert written.size == (33, 47)
    assert written.info.get("icc_profile") == srgb_profile()
    xmp = written.info.get("xmp")
    xmp = xmp.encode() if isinstance(xmp, str) else xmp
    assert b'dc:format="image/jpeg"' in xmp and b'tiff:Orientation="1"' in xmp
    exif = written.getexif()
    assert exif[0x010F] == "Camera Maker" and exif[0x0110] == "Model 7"
    assert exif.get_ifd(0x8769)[0x9003] == "2024:05:06 07:08:09"
    assert exif.get_ifd(0x8825)[1] == "N"
    assert exif.get(0x0112, 1) == 1


@pytest.mark.parametrize("output_format", ["png", "webp", "jpeg"])
def test_exif_bytes_are_kept_byte_for_byte_except_the_orientation(tmp_path, output_format):
    original = exif_block(orientation=8)
    metadata = Metadata(exif=original).for_oriented_pixels()
    written = Image.open(io.BytesIO(encode_image(natural_image(16, 16), metadata, output_format)))
    raw = written.info["exif"]
    raw = raw if raw.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + raw
    differing = [i for i, (a, b) in enumerate(zip(original, raw)) if a != b]
    assert len(raw) == len(original) and len(differing) == 1
    assert exif_orientation(original) == 8 and exif_orientation(raw) == 1


def test_an_icc_profile_is_dropped_where_it_does_not_describe_the_pixels():
    # An RGB profile cannot describe a greyscale PNG.
    written = Image.open(io.BytesIO(encode_image(natural_image(8, 8), Metadata(icc_profile=srgb_profile()), "png", greyscale=True)))
    assert written.mode == "L" and "icc_profile" not in written.info


def test_big_endian_exif_orientation_is_read_and_reset():
    # Pillow writes little-endian EXIF; a camera may write "MM".
    entries = struct.pack(">HHIHH", 0x0112, 3, 1, 7, 0) + struct.pack(">HHII", 0x010F, 2, 4, 0x41424300)
    exif = b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + bytes(4)
    assert exif_orientation(exif) == 7
    reset = Metadata(exif=exif).for_oriented_pixels().exif
    assert exif_orientation(reset) == 1 and len(reset) == len(exif)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 200))
def test_the_exif_parser_never_fails_on_garbage(noise, cut):
    for block in (noise, b"Exif\x00\x00II*\x00" + noise, exif_block(orientation=5)[:cut] + noise):
        assert 1 <= exif_orientation(block) <= 8
        reset = Metadata(exif=block).for_oriented_pixels().exif
        assert len(reset) == len(block)


def test_a_files_description_comes_from_xmp_then_exif(tmp_path):
    exif = Image.Exif()
    exif[0x010E] = "a harbour at dawn"
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description><dc:description><rdf:Alt>'
        b'<rdf:li xml:lang="x-default">boats &amp; gulls</rdf:li></rdf:Alt></dc:description>'
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    assert Metadata(exif=exif.tobytes()).description == "a harbour at dawn"
    assert Metadata(exif=exif.tobytes(), xmp=xmp).description == "boats & gulls"
    assert Metadata().description is None and Metadata(exif=b"Exif\x00\x00garbage", xmp=b"<x/>").description is None
    source = tmp_path / "described.jpg"
    Image.new("RGB", (8, 8)).save(source, exif=exif.tobytes())
    assert load_image(source).metadata.description == "a harbour at dawn"


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=80))
def test_the_description_reader_never_fails_on_garbage(noise):
    for block in (noise, b"Exif\x00\x00II*\x00" + noise, b"MM\x00*" + noise):
        description = Metadata(exif=block, xmp=b"<dc:description><rdf:li>" + noise).description
        assert description is None or isinstance(description, str)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, reason",
    [("empty", "empty file"), ("not_image", "not an image"), ("truncated", "truncated"), ("bomb", "decompression bomb")],
)
def test_bad_files_raise_bad_input_naming_file_and_reason(tmp_path, kind, reason):
    path = write(tmp_path, f"{kind}.jpg", make_broken(kind))
    with pytest.raises(BadInput) as caught:
        load_image(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_the_pixel_limit_is_configurable(tmp_path):
    path = write(tmp_path, "big.jpg", make_jpeg("420", 64, 64))
    assert load_image(path, max_pixels=64 * 64).pixels.shape == (64, 64, 3)
    with pytest.raises(BadInput, match="over the limit"):
        load_image(path, max_pixels=64 * 64 - 1)
    # A header claiming 156 MP (under Pillow's own guard) is refused before any pixel is decoded.
    with pytest.raises(BadInput, match="megapixels"):
        load_image(write(tmp_path, "claims.jpg", set_jpeg_size(make_jpeg("420"), 12000, 13000)))


def test_missing_files_and_folders_are_bad_input(tmp_path):
    with pytest.raises(BadInput, match="cannot be read"):
        load_image(tmp_path / "absent.jpg")
    with pytest.raises(BadInput, match="directory"):
        load_image(tmp_path)


# --- atomic writes ---------------------------------------------------------------------


def test_write_atomic_leaves_old_content_and_no_temporary_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def refuse(source, destination):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("enhance.image.os.replace", refuse)
    with pytest.raises(OSError):
        write_atomic(target, b"new content")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_write_atomic_creates_folders_and_names_its_temporaries(tmp_path):
    target = tmp_path / "a" / "b" / "photo.png"
    write_atomic(target, b"data")
    assert target.read_bytes() == b"data"
    assert temporary_target(f".photo.png.0123456789ab{TEMP_SUFFIX}") == "photo.png"
    assert temporary_target("photo.png") is None
    assert temporary_target(f".photo.png{TEMP_SUFFIX}") is None
