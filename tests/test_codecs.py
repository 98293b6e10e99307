"""Every built-in codec against the protocol, plus each family's own behaviour.

BPG and VTM run through fake binaries (tests/fake_bench_codecs) that check the command
lines they receive; neural codecs use tiny random-weight models.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import natural_image

from enhance._compressai import import_compressai
from enhance.codecs import BUILTIN_CODECS, describe_codecs
from enhance.registry import get_codec
from enhance.codecs.base import Codec
from enhance.framing import ByteWriter
from enhance.codecs.neural import CompressAICodec, image_to_tensor, tensor_to_image
from enhance.errors import BadInput, CodecUnavailable, EnhanceError, WeightsError
from enhance.jpeg import inspect_jpeg

FAKES = Path(__file__).parent / "fake_bench_codecs"
SMALL, LARGE = (33, 47), (512, 768)
# The autoregressive context model decodes one latent position at a time (~0.1 s each on
# a busy CPU), so cheng2020-anchor's "large" image is kept to 32 positions.
LARGE_FOR = {"cheng2020-anchor": (64, 96)}

# A quality each classical codec should code the test image well at, and the PSNR it must reach.
HIGH_QUALITY = {"jpeg": 95, "webp": 95, "avif": 90, "jpeg2000": 45.0, "jxl": 95, "heic": 90, "bpg": 10, "vtm": 10}
MIN_PSNR = 32.0
# Faster settings where a codec's defaults cost seconds per image.
FAST_OPTIONS = {"heic": {"preset": "ultrafast"}}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture
def fake_binaries(monkeypatch):
    """Points BPG and VTM at the fakes (Python scripts run by this interpreter's `python3`)."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("ENHANCE_BPGENC", str(FAKES / "bpgenc"))
    monkeypatch.setenv("ENHANCE_BPGDEC", str(FAKES / "bpgdec"))
    monkeypatch.setenv("ENHANCE_VTM_DIR", str(FAKES / "vtm" / "bin"))
    monkeypatch.delenv("ENHANCE_VTM_CONFIG", raising=False)
    monkeypatch.delenv("FAKE_CODEC_FAIL", raising=False)


def tiny_model(name: str, quality: int):
    """A random-weight model with 8 channels; a higher quality scales the latent up, so
    that, as with trained weights, the rate rises with the quality."""
    import_compressai()
    from compressai.models import Cheng2020Anchor, MeanScaleHyperprior, ScaleHyperprior

    torch.manual_seed(0)
    model = {
        "bmshj2018-hyperprior": lambda: ScaleHyperprior(N=8, M=8),
        "mbt2018-mean": lambda: MeanScaleHyperprior(N=8, M=8),
        "cheng2020-anchor": lambda: Cheng2020Anchor(N=8),
    }[name]()
    with torch.no_grad():
        model.g_a[-1].weight.mul_(quality)
    return model


def make_codec(name: str, **options):
    options = {**FAST_OPTIONS.get(name, {}), **options}
    if issubclass(BUILTIN_CODECS[name], CompressAICodec):
        options.setdefault("model_loader", lambda quality, metric: tiny_model(name, quality))
    return get_codec(name, **options)


def qualities_best_to_worst(codec) -> list[float]:
    low, high = codec.rate_range
    values = [high, (low + high) / 2, low] if codec.higher_rate_is_better else [low, (low + high) / 2, high]
    return [round(v) for v in values] if getattr(codec, "integer_rate", True) else values


def reference_reconstruction(codec: CompressAICodec, image: np.ndarray, quality: int) -> np.ndarray:
    """What the model reconstructs from the quantized latents, computed without the entropy coder."""
    model = codec.model(quality)
    x = image_to_tensor(image)
    with torch.no_grad():
        if codec.name != "cheng2020-anchor":
            return tensor_to_image(model(x)["x_hat"], *image.shape[:2])
        # The context model quantizes each latent around a mean predicted from the ones before
        # it; iterating the whole-tensor prediction reaches the same values (each pass fixes at
        # least one more position in raster order, and the result is the unique fixed point).
        y = model.g_a(x)
        z_hat, _ = model.entropy_bottleneck(model.h_a(y))
        params = model.h_s(z_hat)
        y_hat = torch.round(y)
        for _ in range(y.shape[2] * y.shape[3]):
            gaussian = model.entropy_parameters(torch.cat((params, model.context_prediction(y_hat)), dim=1))
            means = gaussian.chunk(2, 1)[1]
            updated = torch.round(y - means) + means
            if torch.equal(updated, y_hat):
                break
            y_hat = updated
        return tensor_to_image(model.g_s(y_hat), *image.shape[:2])


@pytest.mark.parametrize("name", list(BUILTIN_CODECS))
def test_codec_conformance(name, fake_binaries):
    codec = make_codec(name)
    assert isinstance(codec, Codec)
    assert codec.name == name
    low, high = codec.rate_range
    assert low < high
    assert codec.file_extension.startswith(".")
    assert isinstance(codec.needs_container, bool) and isinstance(codec.higher_rate_is_better, bool)
    usable, reason = codec.available()
    small = natural_image(*SMALL, seed=1)
    if not usable:
        assert reason
        with pytest.raises(CodecUnavailable, match=name):
            codec.encode(small, high)
        with pytest.raises(CodecUnavailable, match=name):
            codec.decode(b"\x00" * 16)
        return
    neural = isinstance(codec, CompressAICodec)
    quality = max(qualities_best_to_worst(codec)[0] - 1, low) if neural else HIGH_QUALITY[name]
    for shape in (SMALL, LARGE_FOR.get(name, LARGE)):
        image = natural_image(*shape, seed=2)
        data = codec.encode(image, quality)
        assert isinstance(data, bytes) and data
        decoded = codec.decode(data)
        assert decoded.shape == image.shape and decoded.dtype == np.uint8
        if neural:
            reference = reference_reconstruction(codec, image, quality)
            differ = np.abs(decoded.astype(int) - reference) > 1
            assert differ.mean() < 0.002, f"{name} {shape}: {differ.mean():.2%} of samples differ from the model's"
        else:
            assert psnr(image, decoded) > MIN_PSNR, f"{name} {shape}"
    # The bitstream shrinks as quality falls (cheng2020-anchor on the small image: it is slow).
    image = small if name == "cheng2020-anchor" else natural_image(96, 128, seed=3)
    sizes = [len(codec.encode(image, q)) for q in qualities_best_to_worst(codec)]
    assert sizes[0] > sizes[1] > sizes[2], f"{name}: sizes {sizes} from best to worst quality"
    with pytest.raises(BadInput):
        codec.decode(data[: len(data) // 2])
    with pytest.raises(BadInput):
        codec.decode(bytes(range(256)) * 2)
    with pytest.raises(BadInput):
        codec.decode(b"")


def test_get_codec_names_the_known_codecs():
    with pytest.raises(EnhanceError, match="unknown codec 'nope'.*jpeg.*vtm.*cheng2020-anchor"):
        get_codec("nope")
    assert get_codec("jpeg", subsampling="4:4:4").subsampling == "4:4:4"
    with pytest.raises(EnhanceError, match="subsampling"):
        get_codec("jpeg", subsampling="4:1:1")
    with pytest.raises(TypeError):
        BUILTIN_CODECS["jpeg"]("4:4:4")  # keyword arguments only


def test_quality_and_image_are_checked():
    codec = get_codec("jpeg")
    image = natural_image(*SMALL)
    for quality in (0, 101, 50.5, "high"):
        with pytest.raises(EnhanceError, match="quality"):
            codec.encode(image, quality)
    for bad in (image.astype(np.float32), image[:, :, 0], np.dstack([image, image[:, :, :1]]), image[:0]):
        with pytest.raises(BadInput, match="jpeg"):
            codec.encode(bad, 80)
    assert len(get_codec("jxl").encode(image, 81.25)) > 0  # a continuous knob takes any value in range


def test_jxl_quality_follows_cjxl():
    """-q for JPEG XL is cjxl's quality (0..100, higher is better), not a Butteraugli distance."""
    from enhance.codecs.jxl import distance_from_quality

    codec = get_codec("jxl")
    assert codec.rate_range == (0.0, 100.0) and codec.higher_rate_is_better
    assert distance_from_quality(90) == pytest.approx(1.0)
    assert distance_from_quality(0) == pytest.approx(25.0)
    assert distance_from_quality(30) == pytest.approx(6.4)
    assert distance_from_quality(100) == 0.0
    if not codec.available()[0]:
        pytest.skip("no JPEG XL here")
    image = natural_image(*SMALL)
    sizes = [len(codec.encode(image, quality)) for quality in (10, 50, 90)]
    assert sizes == sorted(sizes)
    np.testing.assert_array_equal(codec.decode(codec.encode(image, 100)), image)  # 100 is lossless


def test_jpeg_options_reach_the_file():
    image = natural_image(*SMALL)
    for subsampling in ("4:2:0", "4:2:2", "4:4:4"):
        info = inspect_jpeg(get_codec("jpeg", subsampling=subsampling).encode(image, 77))
        assert (info.subsampling, info.estimated_quality, info.quality_is_exact) == (subsampling, 77, True)
    grey = np.repeat(image[:, :, :1], 3, axis=2)
    info = inspect_jpeg(get_codec("jpeg").encode(grey, 90))
    assert info.components == 3 and info.colour_space == "YCbCr"


def test_pillow_decoders_accept_only_their_format():
    image = natural_image(*SMALL)
    with pytest.raises(BadInput, match="WEBP"):
        get_codec("webp").decode(get_codec("jpeg").encode(image, 90))


def test_bpg_wrapper_runs_the_configured_binaries(fake_binaries):
    image = natural_image(*SMALL)
    for options in ({}, {"subsampling": "420", "bit_depth": 10, "colour_space": "rgb", "hevc_encoder": "jctvc"}):
        codec = get_codec("bpg", **options)
        data = codec.encode(image, 0)
        assert data.startswith(b"BPG\xfb")
        np.testing.assert_array_equal(codec.decode(data), image)  # the fake is lossless at QP 0
    with pytest.raises(BadInput, match="BPG signature"):
        codec.decode(b"\x89PNG\r\n\x1a\n")


def test_external_failures_raise_instead_of_exiting(fake_binaries, monkeypatch, capfd):
    monkeypatch.setenv("FAKE_CODEC_FAIL", "1")
    with pytest.raises(EnhanceError, match="exit status 1: bpgenc: simulated encoder failure"):
        get_codec("bpg").encode(natural_image(*SMALL), 30)
    payload = get_codec("vtm").encode(natural_image(*SMALL), 30)
    with pytest.raises(BadInput, match="DecoderAppStatic failed.*corrupt stream"):
        get_codec("vtm").decode(payload[:-8])
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_vtm_codes_rgb_with_the_matching_decoder_flag(fake_binaries):
    image = natural_image(*SMALL)
    data = get_codec("vtm", rgb=True).encode(image, 0)
    np.testing.assert_array_equal(get_codec("vtm").decode(data), image)  # the payload records RGB coding
    ycbcr = get_codec("vtm").decode(get_codec("vtm").encode(image, 0))
    assert np.abs(ycbcr.astype(int) - image).max() <= 2  # only YCbCr rounding


def test_vtm_payload_header_is_checked(fake_binaries):
    data = get_codec("vtm").encode(natural_image(*SMALL), 20)
    codec = get_codec("vtm")
    for bad, reason in ((b"\x02" + data[1:], "version"), (data[:3] + b"\x80" + data[4:], "flags"), (data[:4], "no VVC")):
        with pytest.raises(BadInput, match=reason):
            codec.decode(bad)


def test_missing_binaries_make_the_codec_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("ENHANCE_BPGENC", str(tmp_path / "bpgenc"))
    monkeypatch.setenv("ENHANCE_BPGDEC", str(FAKES / "bpgdec"))
    usable, reason = get_codec("bpg").available()
    assert not usable and "ENHANCE_BPGENC" in reason
    with pytest.raises(CodecUnavailable, match="bpgenc"):
        get_codec("bpg").encode(natural_image(*SMALL), 30)
    monkeypatch.delenv("ENHANCE_VTM_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    usable, reason = get_codec("vtm").available()
    assert not usable and "ENHANCE_VTM_DIR" in reason
    monkeypatch.setenv("ENHANCE_VTM_DIR", str(FAKES / "vtm" / "bin"))
    monkeypatch.setenv("ENHANCE_VTM_CONFIG", str(tmp_path / "missing.cfg"))
    usable, reason = get_codec("vtm").available()
    assert not usable and "ENHANCE_VTM_CONFIG" in reason


def test_neural_stream_names_its_model():
    image = natural_image(*SMALL)
    encoder = make_codec("bmshj2018-hyperprior", metric="ms-ssim")
    data = encoder.encode(image, 3)
    # A fresh decoder has no model loaded: it must take quality and metric from the stream.
    asked = []
    decoder = make_codec(
        "bmshj2018-hyperprior",
        model_loader=lambda quality, metric: asked.append((quality, metric)) or tiny_model("bmshj2018-hyperprior", quality),
    )
    np.testing.assert_array_equal(decoder.decode(data), encoder.decode(data))
    assert asked == [(3, "ms-ssim")]


def test_neural_payload_fuzz():
    codec = make_codec("mbt2018-mean")
    data = codec.encode(natural_image(*SMALL), 4)
    for end in range(len(data)):
        with pytest.raises(BadInput):
            codec.decode(data[:end])
    with pytest.raises(BadInput, match="trailing"):
        codec.decode(data + b"\x00")
    huge = ByteWriter()
    for field in (1, 0, 4):  # version, metric, quality
        huge.u8(field)
    huge.varint(1 << 16)
    huge.varint(1 << 16)
    with pytest.raises(BadInput, match="65536x65536 is 4295 megapixels, over the limit"):
        codec.decode(huge.getvalue() + data[-20:])
    rng = np.random.default_rng(0)
    for _ in range(100):
        corrupt = bytearray(data)
        for position in rng.integers(0, 8, size=rng.integers(1, 3)):  # the header and first lengths
            corrupt[position] = rng.integers(0, 256)
        try:
            decoded = codec.decode(bytes(corrupt))
        except BadInput:
            continue
        assert decoded.dtype == np.uint8 and decoded.ndim == 3


def test_neural_codec_loads_pretrained_weights_through_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    codec = get_codec("bmshj2018-hyperprior", weights_lock=tmp_path / "weights.lock")
    model = tiny_model("bmshj2018-hyperprior", 2)
    model.update()
    checkpoint = tmp_path / "upstream.pth.tar"
    torch.save(model.state_dict(), checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    (tmp_path / "weights.lock").write_text(
        "[[file]]\n"
        f'bundle = "{codec.weights_bundle}"\n'
        f'path = "{codec.weights_file(2, "mse")}"\n'
        f'url = "{checkpoint.as_uri()}"\n'
        f'sha256_prefix = "{digest[:8]}"\n'
        'license = "BSD-3-Clause-Clear"\n'
    )
    image = natural_image(*SMALL)
    data = codec.encode(image, 2)
    expected = make_codec("bmshj2018-hyperprior", model_loader=lambda quality, metric: model)
    np.testing.assert_array_equal(codec.decode(data), expected.decode(data))
    with pytest.raises(WeightsError, match="no file"):
        codec.encode(image, 3)
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "another-cache"))
    torch.save({"g_a.0.weight": torch.zeros(4, 3, 5, 5)}, checkpoint)
    (tmp_path / "weights.lock").write_text(
        (tmp_path / "weights.lock").read_text().replace(digest[:8], hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:8])
    )
    with pytest.raises(WeightsError, match="not bmshj2018-hyperprior weights"):
        get_codec("bmshj2018-hyperprior", weights_lock=tmp_path / "weights.lock").encode(image, 2)


def test_compressai_import_leaves_no_stand_ins_behind():
    compressai = import_compressai()
    assert compressai.__name__ == "compressai"
    for package in ("torchvision", "torch_geometric", "pandas"):
        module = sys.modules.get(package)
        assert module is None or getattr(module, "__file__", None), f"{package} stand-in left in sys.modules"
    if "torch_geometric" not in sys.modules:
        from compressai.transforms.point import RandomSample

        with pytest.raises(RuntimeError, match="torch_geometric"):
            RandomSample(num=4)


def test_describe_codecs_and_cli(fake_binaries, monkeypatch):
    from typer.testing import CliRunner

    from enhance.cli import app

    monkeypatch.delenv("ENHANCE_BPGENC")
    monkeypatch.delenv("ENHANCE_BPGDEC")
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    descriptions = {d.name: d for d in describe_codecs()}
    assert list(descriptions) == list(BUILTIN_CODECS)
    assert descriptions["vtm"].available and not descriptions["bpg"].available
    from enhance import registry

    with registry.use_plugins():  # the built-ins alone, whatever plugins this environment has
        result = CliRunner().invoke(app, ["codecs"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["codec", "family", "quality", "better", "-q", "means", "status"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(BUILTIN_CODECS)
    assert rows["jpeg"].split()[1:5] == ["classical", "1..100", "quality", "higher"]
    assert rows["jpeg"].rstrip().endswith("available")
    assert "1 worst, 100 best" in rows["jpeg"]
    assert rows["vtm"].split()[2:5] == ["0..63", "QP", "lower"]
    assert rows["jpeg2000"].split()[2:5] == ["20..60", "PSNR", "dB"]
    assert "unavailable: bpgenc is not on PATH" in rows["bpg"]
    # Every built-in codec says what its -q means, in its format's own terms.
    assert all(description.rate_meaning for description in descriptions.values())
    assert "cjxl -q" in rows["jxl"] and rows["jxl"].split()[2:5] == ["0..100", "quality", "higher"]
    assert rows["cheng2020-anchor"].split()[1:4] == ["neural", "1..6", "model"]
