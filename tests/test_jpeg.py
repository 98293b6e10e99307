"""The JPEG header parser, quality estimate and DCT coefficient reader."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import natural_image
from PIL import Image
from scipy.fft import idctn

from enhance.errors import BadInput
from enhance.jpeg import JpegInfo, estimate_quality, ijg_tables, inspect_jpeg, read_dct_coefficients


def pillow_jpeg(image: np.ndarray | Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
def test_quality_is_exact_for_every_pillow_quality(subsampling):
    image = natural_image(16, 16)
    for quality in range(1, 101):
        data = pillow_jpeg(image, quality=quality, subsampling=subsampling)
        info = inspect_jpeg(data)
        assert (info.estimated_quality, info.quality_is_exact) == (quality, True)
        assert info.subsampling == subsampling
        with Image.open(io.BytesIO(data)) as decoded:  # Pillow's own reading of the tables
            for slot, table in decoded.quantization.items():
                np.testing.assert_array_equal(info.quantization_tables[slot].ravel(), table)


def test_greyscale_quality_uses_the_luma_table_alone():
    grey = Image.fromarray(natural_image(16, 24)[:, :, 0])
    for quality in (3, 50, 97):
        info = inspect_jpeg(pillow_jpeg(grey, quality=quality))
        assert (info.estimated_quality, info.quality_is_exact) == (quality, True)
        assert (info.components, info.subsampling, info.colour_space, info.chroma_table) == (1, "grey", "grey", None)


def test_non_ijg_tables_get_the_nearest_quality():
    luma, chroma = ijg_tables(60)
    bumped = [np.minimum(luma.astype(int) + 1, 255).ravel().tolist(), chroma.ravel().tolist()]
    info = inspect_jpeg(pillow_jpeg(natural_image(16, 16), qtables=bumped))
    assert not info.quality_is_exact
    assert 55 <= info.estimated_quality <= 60
    flat = np.full((8, 8), 2, dtype=np.uint16)
    quality, exact = estimate_quality(flat, flat)
    assert not exact and quality >= 90
    # libjpeg without force_baseline writes entries above 255 (16-bit tables) at low qualities.
    luma16, chroma16 = ijg_tables(5, force_baseline=False)
    assert luma16.max() > 255
    assert estimate_quality(luma16, chroma16) == (5, True)


def test_header_fields():
    image = natural_image(33, 47)
    info = inspect_jpeg(pillow_jpeg(image, quality=80, subsampling="4:2:2"))
    assert isinstance(info, JpegInfo)
    assert (info.width, info.height, info.components, info.precision) == (47, 33, 3, 8)
    assert info.sampling_factors == ((2, 1), (1, 1), (1, 1))
    assert (info.subsampling, info.progressive, info.arithmetic, info.jfif) == ("4:2:2", False, False, True)
    assert info.colour_space == "YCbCr" and info.adobe_transform is None
    assert inspect_jpeg(pillow_jpeg(image, progressive=True)).progressive
    cmyk = inspect_jpeg(pillow_jpeg(Image.fromarray(image).convert("CMYK"), quality=70))
    assert (cmyk.components, cmyk.colour_space, cmyk.adobe_transform) == (4, "CMYK", 0)


def test_inspect_reads_paths_and_names_them(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(pillow_jpeg(natural_image(16, 16), quality=42))
    assert inspect_jpeg(path).estimated_quality == 42
    assert inspect_jpeg(str(path)).estimated_quality == 42
    with pytest.raises(BadInput, match="missing.jpg"):
        inspect_jpeg(tmp_path / "missing.jpg")
    path.write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(BadInput, match="photo.jpg.*SOI"):
        inspect_jpeg(path)


def _fuzz_seeds() -> list[bytes]:
    image = natural_image(24, 40, seed=5)
    return [
        pillow_jpeg(image, quality=75),
        pillow_jpeg(image, quality=30, progressive=True, subsampling="4:4:4"),
        pillow_jpeg(Image.fromarray(image[:, :, 1]), quality=90),
    ]


def test_parser_rejects_every_truncation():
    for data in _fuzz_seeds():
        for end in range(len(data) - 1):  # everything before the end of the EOI marker
            with pytest.raises(BadInput):
                inspect_jpeg(data[:end])


def test_parser_fuzz_only_raises_bad_input():
    rng = np.random.default_rng(0)
    seeds = _fuzz_seeds()
    outcomes = {"parsed": 0, "rejected": 0}
    for trial in range(600):
        data = bytearray(seeds[trial % len(seeds)])
        # Mostly corrupt the headers, where the parser makes its decisions.
        header_end = data.find(b"\xff\xda") + 16
        for _ in range(rng.integers(1, 6)):
            kind = rng.integers(0, 4)
            position = int(rng.integers(0, header_end if rng.random() < 0.8 else len(data)))
            if kind == 0:
                data[position] = rng.integers(0, 256)
            elif kind == 1:
                data[position : position + 1] = b"\xff"
            elif kind == 2:
                del data[position : position + int(rng.integers(1, 8))]
            else:
                data[position:position] = rng.bytes(int(rng.integers(1, 8)))
        try:
            info = inspect_jpeg(bytes(data))
        except BadInput:
            outcomes["rejected"] += 1
            continue
        outcomes["parsed"] += 1
        assert 1 <= info.estimated_quality <= 100
        assert all(table.shape == (8, 8) and table.dtype == np.uint16 and table.min() >= 1 for table in info.component_tables)
    assert outcomes["rejected"] > 100 and outcomes["parsed"] > 10, outcomes
    for garbage in (b"", b"\xff\xd8", b"\xff\xd8\xff", rng.bytes(300), b"\xff\xd8" + rng.bytes(300)):
        with pytest.raises(BadInput):
            inspect_jpeg(garbage)


def test_dct_coefficients_reconstruct_the_image(tmp_path):
    image = natural_image(33, 47)
    path = tmp_path / "image.jpg"
    path.write_bytes(pillow_jpeg(image, quality=90, subsampling="4:2:0"))
    dct = read_dct_coefficients(path)
    info = inspect_jpeg(path)
    assert (dct.width, dct.height, dct.colour_space) == (47, 33, "YCbCr")
    assert dct.y.shape == (5, 6, 8, 8) and dct.cb.shape == dct.cr.shape == (3, 3, 8, 8)
    assert dct.y.dtype == np.int16
    np.testing.assert_array_equal(dct.tables[0], info.luma_table)
    np.testing.assert_array_equal(dct.tables[1], info.chroma_table)
    # Dequantize and inverse-DCT the luma: it must match libjpeg's decoded luma (natural order, right tables).
    blocks = idctn(dct.y * dct.tables[0].astype(np.float64), axes=(2, 3), norm="ortho") + 128
    luma = blocks.transpose(0, 2, 1, 3).reshape(40, 48)[:33, :47]
    with Image.open(path) as decoded:
        decoded.draft("YCbCr", decoded.size)
        libjpeg_luma = np.asarray(decoded.convert("YCbCr"))[:, :, 0].astype(np.float64)
    assert np.abs(luma - libjpeg_luma).max() <= 1.5


def test_dct_reader_rejects_bad_files(tmp_path):
    data = pillow_jpeg(natural_image(16, 16))
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput, match="truncated.jpg"):
        read_dct_coefficients(path)
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(pillow_jpeg(Image.fromarray(natural_image(16, 16)).convert("CMYK")))
    with pytest.raises(BadInput, match="CMYK"):
        read_dct_coefficients(path)
    grey = tmp_path / "grey.jpg"
    grey.write_bytes(pillow_jpeg(Image.fromarray(natural_image(16, 16)[:, :, 0])))
    dct = read_dct_coefficients(grey)
    assert dct.cb is None and len(dct.tables) == 1
