"""The single-image core: one parse per file, one decision per image, any registered enhancer on every road."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import make_jpeg, natural_image
from enhance import enhance_one, registry, viewer
from enhance.comparison import compare
from enhance.enhance_one import CodedImage, MODEL_ENV, model_setting, plan
from enhance.errors import BadInput
from enhance.runs import run


class Brighten:
    """A plugin enhancer: adds `steps` to every pixel; records the rates it was given."""

    name = "brighten"
    identity = "brighten-v1"
    default_steps = 1
    step_range = (1, 3)
    rates: list = []

    def __init__(self, *, codec, bundle=None, device=None, tile=None):
        self.codec = codec

    def enhance(self, decoded, *, rate, steps=None, seed=0):
        return self.enhance_stops(decoded, rate=rate, stops=[steps or 1], seed=seed)[steps or 1]

    def enhance_stops(self, decoded, *, rate, stops, seed=0):
        type(self).rates.append(rate)
        return {n: np.clip(decoded.astype(int) + n, 0, 255).astype(np.uint8) for n in stops}


@pytest.fixture
def brighten():
    Brighten.rates.clear()
    with registry.use_plugins(enhancers={"brighten": Brighten}):
        yield Brighten


def test_a_plugin_enhancer_serves_run_viewer_and_compare(tmp_path, brighten):
    photo = tmp_path / "in" / "photo.jpg"
    photo.parent.mkdir()
    Image.fromarray(natural_image(40, 56)).save(photo, quality=23)
    summary = run([photo], tmp_path / "out", enhancer_name="brighten", steps=2)
    assert summary.ok and len(summary.done) == 1
    png = viewer.enhanced_png(photo, enhancer_name="brighten", cache=False)
    assert png.startswith(b"\x89PNG")
    comparison = compare(tmp_path / "in", tmp_path / "cmp", codec="jpeg", qualities=[30], steps=[1, 3], metrics=["psnr-rgb"],
                         figures=False, enhancer_name="brighten")
    assert [c.name for c in comparison.configurations] == ["jpeg", "jpeg+brighten-1", "jpeg+brighten-3"]
    # Every road conditions on the quality the file's tables say, not on what was asked for.
    assert brighten.rates == [23.0, 23.0, 30.0]


def test_a_jpeg_is_parsed_once_per_enhancement(tmp_path, brighten, monkeypatch):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("420", 33, 47))
    calls = []
    original = enhance_one.inspect_jpeg
    monkeypatch.setattr(enhance_one, "inspect_jpeg", lambda data: calls.append(1) or original(data))
    assert run([photo], tmp_path / "out", enhancer_name="brighten", consistent=True).ok
    assert len(calls) == 1


def test_the_plan_decides_rate_and_projection_in_one_place():
    jpeg = CodedImage.read(make_jpeg("420", 33, 47))
    assert jpeg.codec == "jpeg" and jpeg.rate == jpeg.jpeg.estimated_quality
    assert plan(jpeg, consistent=True).project and not plan(jpeg, consistent=False).project
    cmyk = CodedImage.read(make_jpeg("cmyk", 33, 47))
    chosen = plan(cmyk, consistent=True)
    assert not chosen.project and chosen.note.startswith("CMYK JPEG")
    import io

    buffer = io.BytesIO()
    Image.fromarray(natural_image(33, 47)).save(buffer, format="WEBP", quality=50)
    webp = CodedImage.read(buffer.getvalue(), rate=50)
    assert webp.codec == "webp" and webp.rate == 50 and webp.jpeg is None
    with pytest.raises(BadInput, match="JPEG"):
        plan(webp, consistent=True)


def test_the_model_setting_is_read_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    assert model_setting(None) == str(tmp_path)
    assert model_setting("elsewhere") == "elsewhere"
    assert model_setting(None, "webp") is None
    monkeypatch.delenv(MODEL_ENV)
    assert model_setting(None) is None
