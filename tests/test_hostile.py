"""Hostile input below the applications: crafted neural streams, decompression bombs, mutated files.

Every case must end in a clean `enhance.errors.EnhanceError` (or a valid image): never a
crash of the process, a traceback of another type, or an allocation beyond the pixel limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import make_jpeg, natural_image, set_jpeg_size  # at import: a plugin's conftest may take the name later

from enhance.errors import BadInput

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


# --- neural payloads: the rANS decoder never reads past its string ------------------


def test_crafted_neural_streams_fail_cleanly_instead_of_crashing():
    """A payload declaring a large picture with 8-byte strings made CompressAI's C++ rANS decoder
    read far past its buffer (SIGSEGV, InterDigitalInc/CompressAI#300). Run in a child process so
    that a crash is a test failure, not the end of the test session."""
    script = textwrap.dedent(
        """
        from test_codecs import make_codec
        from enhance.errors import BadInput
        from enhance.framing import ByteWriter

        for name in ("bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"):
            codec = make_codec(name)
            for side, strings in ((1024, (b"\\xff" * 8, b"\\x00\\x00\\x00\\x80" * 2)), (64, (b"\\x01" * 12, b"\\xff" * 8))):
                payload = ByteWriter()
                for field in (1, 0, 4):  # version, metric, quality
                    payload.u8(field)
                payload.varint(side)
                payload.varint(side)
                payload.u8(2)
                for string in strings:
                    payload.blob(string)
                try:
                    codec.decode(payload.getvalue())
                except BadInput as error:
                    print("clean", name, side, error)
                else:
                    print("decoded", name, side)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_subprocess_env(), timeout=600, cwd=ROOT
    )
    assert completed.returncode == 0, f"exit {completed.returncode}: {completed.stderr[-2000:]}"
    lines = completed.stdout.splitlines()
    assert len(lines) == 6 and all(line.startswith("clean") for line in lines), completed.stdout


def test_checked_rans_decoder_is_bit_exact_with_compressai():
    from test_codecs import make_codec

    from enhance._compressai import import_compressai
    from enhance.codecs.rans import CheckedRansDecoder, RansError

    import_compressai()
    from compressai import ans

    model = make_codec("bmshj2018-hyperprior").model(4)
    coder = model.gaussian_conditional
    cdfs = coder._quantized_cdf.tolist()
    sizes = coder._cdf_length.reshape(-1).int().tolist()
    offsets = coder._offset.reshape(-1).int().tolist()
    rng = np.random.default_rng(0)
    for trial in range(10):
        count = 2000
        indexes = rng.integers(0, len(cdfs), count).tolist()
        # Heavy tails: many values fall outside the CDFs and take the escape (bypass) code.
        symbols = np.clip(rng.standard_cauchy(count) * 20, -(2**24), 2**24).astype(np.int32).tolist()
        string = ans.RansEncoder().encode_with_indexes(symbols, indexes, cdfs, sizes, offsets)
        expected = ans.RansDecoder().decode_with_indexes(string, indexes, cdfs, sizes, offsets)
        assert CheckedRansDecoder().decode_with_indexes(string, indexes, cdfs, sizes, offsets) == expected == symbols
        with pytest.raises(RansError):
            CheckedRansDecoder().decode_with_indexes(string[:-4], indexes, cdfs, sizes, offsets)
        with pytest.raises(RansError):
            CheckedRansDecoder().decode_with_indexes(string + b"\0\0\0\0", indexes, cdfs, sizes, offsets)


# --- decompression bombs: one pixel limit, checked before decoding ---------------------

from test_codecs import fake_binaries, make_codec  # noqa: E402,F401  (the fixture is used below)

from enhance import container, limits  # noqa: E402
from enhance.codecs import BUILTIN_CODECS  # noqa: E402


def _middle_quality(codec) -> float:
    low, high = codec.rate_range
    middle = (low + high) / 2
    return round(middle) if getattr(codec, "integer_rate", True) else middle


@pytest.mark.parametrize("name", list(BUILTIN_CODECS))
def test_every_codec_checks_the_declared_size_against_the_one_limit(name, fake_binaries, monkeypatch):
    import enhance

    codec = make_codec(name)
    if not codec.available()[0]:
        pytest.skip(f"{name} is not usable here")
    height, width = 33, 47
    data = codec.encode(natural_image(height, width), _middle_quality(codec))
    wrapped = container.pack(name, width, height, data) if codec.needs_container else data
    monkeypatch.setenv(limits.ENV_VAR, "0.001")  # 1,000 pixels: less than 47x33
    with pytest.raises(BadInput, match=r"47x33 is 0 megapixels, over the limit of 0\.001 .*ENHANCE_MAX_MEGAPIXELS"):
        codec.decode(data)
    with pytest.raises(BadInput, match="over the limit of 0.001"):
        enhance.decode(wrapped) if not codec.needs_container else _decode_container_with(codec, wrapped)
    monkeypatch.setenv(limits.ENV_VAR, "0.0016")
    assert codec.decode(data).shape == (height, width, 3)


def _decode_container_with(codec, data: bytes):
    """`enhance.decode` of a container, its codec built as the tests build it (tiny random weights)."""
    from unittest import mock

    import enhance
    from enhance import registry

    with mock.patch.object(registry, "container_codec", lambda name, **kwargs: ("codec", lambda: codec)):
        return enhance.decode(data)


def test_bombs_are_refused_before_decoding():
    """A 1 KB JPEG declaring 60000x60000 and a container declaring 2^20 x 2^20 are refused by the
    same limit (default 150 MP), with the way to raise it; Pillow's own guard does not pre-empt it."""
    import enhance

    from enhance.image import decode_image

    bomb = set_jpeg_size(make_jpeg("420"), 20000, 20000)  # 400 MP: over ours, over Pillow's 179 MP
    for decode in (lambda: decode_image(bomb, path="bomb.jpg"), lambda: enhance.decode(bomb)):
        with pytest.raises(BadInput, match=r"20000x20000 is 400 megapixels, over the limit of 150 .*ENHANCE_MAX_MEGAPIXELS"):
            decode()
    huge = container.pack("bmshj2018-hyperprior", 1 << 20, 1 << 20, b"\x01\x00\x03")
    with pytest.raises(BadInput, match="container: 1048576x1048576 .* over the limit of 150"):
        enhance.decode(huge)


def test_the_limit_is_one_setting(monkeypatch):
    from enhance.errors import EnhanceError
    from enhance.image import decode_image

    assert limits.max_pixels() == 150_000_000
    monkeypatch.setenv(limits.ENV_VAR, "2.5")
    assert limits.max_pixels() == 2_500_000
    assert limits.max_pixels(1000) == 1000  # an explicit value (enhance run --max-megapixels) wins
    jpeg = make_jpeg("420")  # 33x47 or so: well under a megapixel
    monkeypatch.setenv(limits.ENV_VAR, "0.0001")
    with pytest.raises(BadInput, match="over the limit of 0.0001"):
        decode_image(jpeg, path="small.jpg")
    assert decode_image(jpeg, path="small.jpg", max_pixels=10**6).pixels.ndim == 3
    for bad in ("many", "0", "-1", "nan"):
        monkeypatch.setenv(limits.ENV_VAR, bad)
        with pytest.raises(EnhanceError, match="ENHANCE_MAX_MEGAPIXELS"):
            limits.max_pixels()


def test_jpeg_xl_size_header_is_read_without_decoding():
    import imagecodecs

    from enhance.codecs.jxl import declared_size

    rng = np.random.default_rng(0)
    for height, width in ((1, 1), (8, 8), (33, 47), (47, 33), (256, 512), (9, 144), (513, 1), (3, 5000), (600, 800)):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for options in ({"distance": 1.0, "effort": 1}, {"lossless": True, "effort": 1}, {"distance": 1.0, "usecontainer": True}):
            assert declared_size(bytes(imagecodecs.jpegxl_encode(pixels, **options))) == (width, height)
    with pytest.raises(BadInput, match="truncated"):
        declared_size(b"\xff\x0a")


# --- accurate reasons ------------------------------------------------------------------


def test_twelve_bit_jpeg_and_tiny_files_get_accurate_reasons():
    import enhance

    from enhance.image import decode_image

    data = make_jpeg("420")
    frame = data.find(b"\xff\xc0")
    twelve_bit = data[: frame + 4] + bytes([12]) + data[frame + 5 :]
    with pytest.raises(BadInput, match="a 12-bit JPEG; only 8-bit JPEGs are supported"):
        decode_image(twelve_bit, path="deep.jpg")
    with pytest.raises(BadInput, match="a 12-bit JPEG"):
        enhance.decode(twelve_bit)
    with pytest.raises(BadInput, match="a truncated JPEG: only 2 bytes"):
        decode_image(b"\xff\xd8", path="two.jpg")
    with pytest.raises(BadInput, match="only 2 bytes, too short"):
        decode_image(b"ab", path="two.jpg")
    with pytest.raises(BadInput, match="only 2 bytes, too short"):
        enhance.decode(b"\xff\xd8")


# --- DIRAC bundles: strict configs, finite weights and outputs --------------------------

import json  # noqa: E402

from enhance.enhancers.dirac import BundleError  # noqa: E402


def _with(data: dict, path: str, value) -> dict:
    data = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.embed_dim", 256.0, "model.embed_dim must be a whole number, got 256.0"),
        ("model.mid_blocks", "2", 'model.mid_blocks must be a whole number, got "2"'),
        ("model.unshuffle", 2.0, "model.unshuffle must be a whole number, got 2.0"),
        ("model.channels", [8, "16"], "model.channels\\[1\\] must be a whole number"),
        ("model.rate_conditioned", 1, "model.rate_conditioned must be true or false"),
        ("model.refine_channels", _DELETE, "model is missing the key model.refine_channels"),
        ("schedule.beta_end", "0.02", 'schedule.beta_end must be a finite number, got "0.02"'),
        ("schedule.t_start", _DELETE, "schedule is missing the key schedule.t_start"),
        ("residual_scale", "NaN", 'residual_scale must be a finite number, got "NaN"'),
        ("residual_scale", 0, "residual_scale must be positive"),
        ("rate.low", _DELETE, "rate is missing the key rate.low"),
        ("rate.low", 100.0, "rate.low must be less than rate.high, got 100 and 100"),
        ("rate.high", True, "rate.high must be a finite number, got true"),
        ("thresholds.lower", [[-1.0, -1.0]] * 3, "thresholds.lower\\[0\\] must list 3 values \\(one per image channel\\)"),
        ("thresholds.rates", [5.0, 50.0], "thresholds.lower has 3 rows, thresholds.rates has 2 rates"),
        ("default_steps", 2.0, "default_steps must be a whole number"),
    ],
)
def test_bundle_config_is_validated_strictly(tiny_bundle, key, value, message):
    from enhance.enhancers import load_dirac

    path = tiny_bundle / "config.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps(_with(data, key, value)))
    with pytest.raises(BundleError, match=f"{path}: {message}"):
        load_dirac("jpeg", bundle=tiny_bundle)


def test_non_finite_numbers_in_config_json_are_refused(tiny_bundle):
    from enhance.enhancers.dirac import DiracConfig

    path = tiny_bundle / "config.json"
    path.write_text(path.read_text().replace('"residual_scale": 4.0', '"residual_scale": NaN'))
    assert "NaN" in path.read_text()
    with pytest.raises(BundleError, match="NaN is not a number JSON allows"):
        DiracConfig.load(path)


def test_non_finite_weights_are_refused(tiny_bundle):
    from safetensors.torch import load_file, save_file

    from enhance.enhancers import load_dirac

    weights = tiny_bundle / "model.safetensors"
    state = load_file(str(weights))
    name = next(name for name, tensor in state.items() if tensor.numel() > 1)
    state[name].view(-1)[0] = float("nan")
    save_file(state, str(weights))
    with pytest.raises(BundleError, match=f"{name} holds non-finite values"):
        load_dirac("jpeg", bundle=tiny_bundle)


def test_non_finite_outputs_are_refused(tiny_bundle):
    import torch

    from enhance.enhancers import load_dirac

    enhancer = load_dirac("jpeg", bundle=tiny_bundle, device="cpu")
    with torch.no_grad():
        next(enhancer.pipeline.model.parameters()).fill_(float("inf"))
    with pytest.raises(BundleError, match="non-finite values"):
        enhancer.enhance(natural_image(32, 48), rate=50.0, steps=1)
