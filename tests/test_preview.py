"""Fast modes where a person is waiting: one plan (size, quality -> DCT scale, enhance, steps) for the viewer hook and the thumbnailer."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import enhance
from conftest import JPEG_VARIANTS, make_jpeg, natural_image
from enhance import preview, viewer
from enhance.errors import BadInput
from enhance.image import apply_orientation, decode_image
from enhance.preview import FAST_MAX_PIXELS, FAST_STEPS, FastPlan, fast_plan


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "decoded"


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if anything asks for the enhancer."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was asked for")

    monkeypatch.setattr(viewer, "_enhancer", refuse)
    monkeypatch.setattr(viewer, "enhance_bytes", refuse)


@pytest.fixture
def steps_used(monkeypatch):
    """The steps of each real enhancement the viewer makes."""
    calls = []
    original = viewer.enhance_bytes

    def counting(data, **options):
        calls.append(options["steps"])
        return original(data, **options)

    monkeypatch.setattr(viewer, "enhance_bytes", counting)
    return calls


def big_jpeg(path, width=2000, height=1500, quality=10):
    # Upscaled: a large JPEG made quickly, with some texture.
    image = Image.fromarray(natural_image(height // 8, width // 8)).resize((width, height), Image.Resampling.BICUBIC)
    image.save(path, quality=quality)
    return path


# --- the one decision ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "width, height, quality, size, scale, enhanced",
    [
        (4000, 3000, 85, 256, 8, False),  # a 12 MP photo's thumbnail: 500x375 from libjpeg, no model
        (4000, 3000, 10, 256, 8, False),  # blocking at q10 does not survive 1/8 (each block is one pixel)
        (4000, 3000, 10, 1024, 2, False),
        (4000, 3000, 10, None, 1, False),  # the viewer's default on 12 MP: too many pixels for one step now
        (4000, 3000, 10, 4000, 1, False),
        (1000, 800, 10, None, 1, True),  # 0.8 MP shown whole: enhanced, 1 step
        (400, 300, 10, 256, 1, True),  # small next to the thumbnail: artefacts show, enhanced
        (511, 300, 10, 256, 2, False),  # shown at half size or less: decoded at 1/2
        (400, 300, 95, 256, 1, False),  # above the model's training range: nothing shows
        (100, 60, 30, 256, 1, True),  # smaller than asked: never enlarged, enhanced
        (7, 5, 30, 1, 4, False),  # a scale never exceeds the short side
    ],
)
def test_fast_plan(width, height, quality, size, scale, enhanced):
    plan = fast_plan(width, height, quality, size)
    assert (plan.scale, plan.enhance) == (scale, enhanced), plan.reason
    assert plan.steps == (FAST_STEPS if enhanced else None)
    assert plan.reason.startswith("enhanced" if enhanced else "not enhanced")


def test_the_plan_never_feeds_a_scaled_decode_to_the_model():
    # The model is trained on native decodes at the quality the tables say; a scaled decode is neither.
    for width in (8, 100, 257, 511, 512, 1023, 2048, 4000, 6000):
        for height in (8, 99, 300, 1500, 3000):
            for size in (1, 16, 128, 256, 512, 1024, 2048, None):
                for quality in (5, 50, 90, 95):
                    plan = fast_plan(width, height, quality, size)
                    shown = preview.fitted_size(width, height, size)
                    decoded = (-(-width // plan.scale), -(-height // plan.scale))
                    assert decoded[0] >= shown[0] and decoded[1] >= shown[1]  # never decoded below what is shown
                    assert not (plan.enhance and plan.scale > 1)
                    assert not plan.enhance or width * height <= FAST_MAX_PIXELS
    with pytest.raises(ValueError, match="never enhanced"):
        FastPlan(2, True, 1, "")
    assert fast_plan(600, 400, 10, 256, steps=3).steps is None
    assert fast_plan(300, 200, 10, 256, steps=3).steps == 3
    with pytest.raises(BadInput):
        fast_plan(300, 200, 10, 0)


def test_decode_image_scale_is_libjpegs_dct_scaling(tmp_path):
    data = make_jpeg("420", 75, 101)
    for scale in (1, 2, 4, 8):
        loaded = decode_image(data, path="x.jpg", scale=scale)
        assert loaded.pixels.shape == (-(-75 // scale), -(-101 // scale), 3)
    buffer = io.BytesIO()
    Image.fromarray(natural_image(20, 30)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue(), path="x.png", scale=4).pixels.shape == (20, 30, 3)  # only JPEGs scale


# --- the thumbnailer ----------------------------------------------------------------------------


def test_the_thumbnail_of_a_large_jpeg_is_a_dct_scaled_decode_without_the_model(tmp_path, cache_dir, no_model):
    photo = big_jpeg(tmp_path / "big.jpg")
    out = viewer.write_thumbnail(photo, tmp_path / "thumb.png", 128)
    expected = Image.open(photo)
    expected.draft("RGB", (250, 187))  # libjpeg's 1/8 decode: 250x188
    assert expected.size == (250, 188)
    expected.thumbnail((128, 128), Image.Resampling.LANCZOS)
    thumbnail = Image.open(out)
    assert thumbnail.size == (128, 96)
    np.testing.assert_array_equal(np.asarray(thumbnail), np.asarray(expected))
    assert not cache_dir.exists()  # nothing enhanced, nothing cached
    assert "decoded at 1/8" in enhance.open(photo, size=128).info["enhance_fast"]


def test_the_thumbnailer_command_on_a_large_jpeg_loads_neither_torch_nor_weights(tmp_path):
    photo = big_jpeg(tmp_path / "big.jpg", quality=85)
    env = {**os.environ, "ENHANCE_DIRAC_JPEG": str(tmp_path / "no-such-bundle"), "ENHANCE_CACHE": str(tmp_path / "cache")}
    script = (
        "import sys; from enhance.cli import main; sys.argv = ['enhance', 'thumbnail', '-s', '256', sys.argv[1], sys.argv[2]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", script, str(photo), str(tmp_path / "t.png")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert Image.open(tmp_path / "t.png").size == (256, 192)


def test_a_small_jpeg_thumbnail_is_enhanced_at_one_step(tmp_path, tiny_bundle, cache_dir, steps_used):
    photo = tmp_path / "small.jpg"
    photo.write_bytes(make_jpeg("rotated", 40, 60, seed=4))  # orientation 6: shown 40 wide, 60 high
    out = viewer.write_thumbnail(photo, tmp_path / "thumb.png", 32, model=tiny_bundle)
    assert steps_used == [1]
    whole = enhance.open(photo, model=tiny_bundle)  # the default: the same plan at full size, from the cache
    assert steps_used == [1] and whole.size == (40, 60) and whole.info["enhance_fast"].startswith("enhanced")
    whole.thumbnail((32, 32), Image.Resampling.LANCZOS)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), np.asarray(whole))
    np.testing.assert_array_equal(enhance.open_array(photo, model=tiny_bundle, size=32), np.asarray(whole))


@pytest.mark.parametrize("kind", JPEG_VARIANTS)
def test_every_jpeg_variant_has_a_scaled_preview(tmp_path, kind, cache_dir, no_model):
    photo = tmp_path / f"{kind}.jpg"
    photo.write_bytes(make_jpeg(kind, 48, 64, seed=3))
    image = enhance.open(photo, size=16)
    loaded = decode_image(photo.read_bytes(), path=photo)
    full = Image.fromarray(apply_orientation(loaded.pixels, loaded.orientation))
    full.thumbnail((16, 16), Image.Resampling.LANCZOS)
    assert image.size == full.size and image.mode == ("L" if kind == "grey" else "RGB")
    assert "decoded at 1/4" in image.info["enhance_fast"]
    difference = np.abs(np.asarray(image.convert("RGB"), float) - np.asarray(full, float)).mean()
    assert difference < 12, difference  # the same picture (colour spaces and orientation handled alike)
    assert enhance.open_array(photo, size=16).shape == (full.size[1], full.size[0], 3)


# --- the viewer hook's default ------------------------------------------------------------------


def test_the_viewer_default_returns_a_large_jpeg_whole_and_decoded(tmp_path, monkeypatch, cache_dir, no_model):
    monkeypatch.setattr(preview, "FAST_MAX_PIXELS", 1000)  # a 40x56 photo counts as large
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("icc", 40, 56))
    image = enhance.open(photo)
    loaded = decode_image(photo.read_bytes(), path=photo)
    assert image.size == (56, 40) and "pass steps=" in image.info["enhance_fast"]
    np.testing.assert_array_equal(np.asarray(image), loaded.pixels)
    assert image.info["icc_profile"] == loaded.metadata.icc_profile and image.info["exif"]
    np.testing.assert_array_equal(enhance.open_array(photo), loaded.pixels)


def test_steps_named_at_full_size_enhance_as_asked(tmp_path, monkeypatch, tiny_bundle, cache_dir, steps_used):
    monkeypatch.setattr(preview, "FAST_MAX_PIXELS", 1000)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("420", 40, 56))
    assert enhance.open(photo, model=tiny_bundle, steps=2).size == (56, 40)
    enhance.open_array(photo, model=tiny_bundle, steps=1)
    assert steps_used == [2, 1]


def test_the_fast_modes_refuse_what_is_not_a_jpeg_before_any_model(tmp_path, cache_dir, no_model):
    png = tmp_path / "picture.png"
    Image.new("RGB", (8, 8)).save(png)
    for call in (lambda: enhance.open(png, size=4), lambda: enhance.open_array(png),
                 lambda: viewer.write_thumbnail(png, tmp_path / "t.png", 4)):
        with pytest.raises(BadInput, match="picture.png: not a JPEG"):
            call()
