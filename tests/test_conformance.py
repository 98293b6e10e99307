"""The conformance kit (`enhance.testing`) over the built-in codecs and enhancer, and the plugin plumbing."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from enhance import api, container, limits, registry, testing, weights
from enhance.codecs import BUILTIN_CODECS
from enhance.enhancers import load_dirac
from enhance.errors import BadInput, ContainerError

# Codecs that run in-process here; BPG/VTM need binaries and the neural ones weights,
# and test_codecs covers them with stand-ins.
IN_PROCESS = ["jpeg", "webp", "avif", "jpeg2000", "jxl", "heic"]


@pytest.mark.parametrize("name", IN_PROCESS)
def test_builtin_codecs_pass_the_conformance_kit(name):
    codec_class = BUILTIN_CODECS[name]
    usable, reason = codec_class.available()
    if not usable:
        pytest.skip(reason)
    testing.check_codec(codec_class())


def test_every_builtin_answers_available_on_the_class():
    for codec_class in BUILTIN_CODECS.values():
        testing.check_available(codec_class)


def test_the_dirac_enhancer_passes_the_conformance_kit(tiny_bundle):
    testing.check_enhancer(load_dirac("jpeg", bundle=tiny_bundle), rate=20, stops=[1, 2])


class ToyFullCodec:
    """A lossy full codec: 4x4 block means, one byte each; decode adds seeded noise scaled by `params`."""

    name = "toy-blocks"
    rate_range = (1.0, 4.0)
    rate_unit = "block exponent"
    seen_params: list = []

    @classmethod
    def available(cls):
        return True, ""

    def encode(self, image, rate):
        block = 2 ** int(5 - rate)
        height, width = image.shape[:2]
        small = image[::block, ::block].mean(axis=2).astype(np.uint8)
        return bytes([block, height, width]) + small.tobytes()

    def decode(self, data, *, steps=None, seed=0, params=None):
        type(self).seen_params.append(params)
        if len(data) < 3 or data[0] == 0 or data[1] == 0 or data[2] == 0:
            raise BadInput("toy-blocks: truncated header")
        block, height, width = data[0], data[1], data[2]
        limits.check_pixels(width, height, "toy-blocks payload")
        rows, columns = -(-height // block), -(-width // block)
        if len(data) != 3 + rows * columns:
            raise BadInput("toy-blocks: wrong payload length")
        small = np.frombuffer(data[3:], dtype=np.uint8).reshape(rows, columns)
        pixels = np.repeat(np.repeat(small, block, axis=0), block, axis=1)[:height, :width]
        noise = np.random.default_rng(seed).integers(0, 2 * (steps or 1), (height, width))
        grey = np.clip(pixels.astype(int) + noise, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)


def test_the_kit_accepts_a_well_behaved_full_codec():
    testing.check_full_codec(ToyFullCodec(), rates=[1.0, 2.0, 4.0], steps=[None, 1, 3])


def test_the_kit_catches_a_full_codec_that_ignores_the_users_pixel_limit():
    class Unlimited(ToyFullCodec):
        def decode(self, data, *, steps=None, seed=0, params=None):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(limits, "check_pixels", lambda *args, **kwargs: None)
                return super().decode(data, steps=steps, seed=seed, params=params)

    with pytest.raises(AssertionError, match="over a limit of 1,500 pixels"):
        testing.check_pixel_limit(Unlimited(), 2.0)


def test_the_kit_catches_a_decoder_that_crashes_on_bad_bytes():
    class Crashing(ToyFullCodec):
        def decode(self, data, *, steps=None, seed=0):
            return np.zeros((data[1], data[2], 3), np.uint8)  # IndexError on short input

    with pytest.raises(AssertionError, match="IndexError"):
        testing.check_bad_bitstreams(Crashing(), 2.0, full=True)


def test_container_params_reach_a_decode_that_takes_them():
    ToyFullCodec.seen_params.clear()
    with registry.use_plugins(full_codecs={"toy-blocks": ToyFullCodec}):
        data = api.encode_bitstream(testing.sample_image(), "toy-blocks", 3)
        api.decode_bitstream(data, steps=2, seed=1)
    assert ToyFullCodec.seen_params == [{"rate": "3"}]


def test_a_full_codec_that_reads_no_params_gets_none_written():
    class Unparameterised(ToyFullCodec):
        def decode(self, data, *, steps=None, seed=0):
            return ToyFullCodec.decode(self, data, steps=steps, seed=seed)

    image = testing.sample_image()
    with registry.use_plugins(full_codecs={"toy-blocks": Unparameterised}):
        data = api.encode_bitstream(image, "toy-blocks", 3)
        assert container.unpack(data).params == b""
        assert api.decode_bitstream(data).shape == image.shape


def test_a_declared_container_id_is_checked_against_the_table():
    assert container.checked_codec_id("perco", 9) == 9
    assert container.checked_codec_id("latent-diffusion", 10) == 10
    assert container.checked_codec_id("toy", None) is None
    with pytest.raises(ContainerError, match="belongs to 'perco'"):
        container.checked_codec_id("toy", 9)
    with pytest.raises(ContainerError, match="does not assign"):
        container.checked_codec_id("toy", 999)

    class Claiming(ToyFullCodec):
        container_id = 9

    with registry.use_plugins(full_codecs={"toy-blocks": Claiming}), pytest.raises(ContainerError, match="perco"):
        api.encode_bitstream(testing.sample_image(), "toy-blocks", 2)


def test_a_plugins_weights_lock_shows_in_enhance_weights(tmp_path):
    payload = tmp_path / "blob.bin"
    payload.write_bytes(b"toy weights")
    import hashlib

    lock = tmp_path / "weights.lock"
    lock.write_text(
        '[[file]]\nbundle = "toy-blocks"\npath = "blob.bin"\nurl = "repo://blob.bin"\n'
        f'sha256 = "{hashlib.sha256(b"toy weights").hexdigest()}"\nsize = 11\nlicense = "MIT"\n'
    )

    class Locked(ToyFullCodec):
        weights_lock = lock

    from enhance.cli import app

    with registry.use_plugins(full_codecs={"toy-blocks": Locked}):
        assert any(row.bundle == "toy-blocks" for row in weights.all_rows())
        assert weights.resolve("toy-blocks", "blob.bin") == payload
        listed = CliRunner().invoke(app, ["weights", "list"])
        verified = CliRunner().invoke(app, ["weights", "verify", "toy-blocks"])
    assert listed.exit_code == 0 and "toy-blocks" in listed.output
    assert verified.exit_code == 0 and verified.output.startswith("ok  toy-blocks/blob.bin")
    with registry.use_plugins(weights_locks={"toy": lock}):
        assert [row.path for row in weights.all_rows() if row.bundle == "toy-blocks"] == ["blob.bin"]


def test_full_codecs_through_the_command_line(tmp_path):
    from enhance.cli import app

    source = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(testing.sample_image()).save(source)
    runner = CliRunner()
    with registry.use_plugins(full_codecs={"toy-blocks": ToyFullCodec}):
        listed = runner.invoke(app, ["codecs"])
        encoded = runner.invoke(app, ["encode", str(source), "-c", "toy-blocks", "-q", "2", "-o", str(tmp_path / "x.enh")])
        decoded = runner.invoke(app, ["decode", str(tmp_path / "x.enh"), "--steps", "2", "--seed", "5", "-o", str(tmp_path / "x.png")])
    row = next(line for line in listed.output.splitlines() if line.startswith("toy-blocks"))
    assert row.split()[1:4] == ["full", "1..4", "block"] and row.endswith("available")
    assert encoded.exit_code == 0, encoded.output
    assert decoded.exit_code == 0 and "47x33" in decoded.output
