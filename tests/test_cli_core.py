import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import natural_image
from enhance import __version__, cli, container, registry
from enhance.api import decode_bitstream, encode_bitstream
from enhance.registry import native_codec
from enhance.errors import BadInput, CodecUnavailable, ContainerError

runner = CliRunner()


class LosslessToyCodec:
    """A container codec small enough to read: zlib-compressed pixels behind a 4-byte size."""

    name = "toy-lossless"
    rate_range = (1, 9)
    higher_rate_is_better = True
    file_extension = ".enh"
    needs_container = True

    def available(self):
        return True, ""

    def encode(self, image, quality):
        height, width = image.shape[:2]
        return height.to_bytes(2, "big") + width.to_bytes(2, "big") + zlib.compress(image.tobytes(), int(quality))

    def decode(self, data):
        height, width = int.from_bytes(data[:2], "big"), int.from_bytes(data[2:4], "big")
        try:
            pixels = zlib.decompress(data[4:])
        except zlib.error as error:
            raise BadInput(f"toy-lossless: {error}") from None
        return np.frombuffer(pixels, np.uint8).reshape(height, width, 3).copy()


@pytest.fixture
def photo(tmp_path):
    pixels = natural_image(33, 47)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def run_main(monkeypatch, capsys, *args):
    """Runs the real entry point, with its EnhanceError handling."""
    monkeypatch.setattr(sys, "argv", ["enhance", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_version():
    result = runner.invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"enhance {__version__}\n"


def test_jpeg_encode_decode(photo, tmp_path):
    source, pixels = photo
    encoded = tmp_path / "photo.jpg"
    result = runner.invoke(cli.app, ["encode", str(source), "-c", "jpeg", "-q", "80", "-o", str(encoded)])
    assert result.exit_code == 0, result.output
    size = encoded.stat().st_size
    assert encoded.read_bytes()[:3] == b"\xff\xd8\xff"
    assert result.stdout == f"{encoded}: {size} bytes, {8 * size / (33 * 47):.4f} bpp\n"

    decoded = tmp_path / "decoded.png"
    result = runner.invoke(cli.app, ["decode", str(encoded), "-o", str(decoded)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{decoded}: 47x33\n"
    restored = np.asarray(Image.open(decoded))
    assert restored.shape == (33, 47, 3)
    mse = np.mean((restored.astype(float) - pixels) ** 2)
    assert 0 < mse < 100  # lossy, but the same picture


def test_container_codec_encode_decode(photo, tmp_path):
    source, pixels = photo
    encoded = tmp_path / "photo.enh"
    decoded = tmp_path / "decoded.png"
    with registry.use_plugins(codecs={"toy-lossless": LosslessToyCodec}):
        result = runner.invoke(cli.app, ["encode", str(source), "-c", "toy-lossless", "-q", "9", "-o", str(encoded)])
        assert result.exit_code == 0, result.output
        parsed = container.unpack(encoded.read_bytes())
        assert (parsed.codec, parsed.width, parsed.height) == ("toy-lossless", 47, 33)
        assert container.decode_params(parsed.params) == {"rate": "9"}
        assert f"payload {len(parsed.payload)} bytes, {parsed.payload_bpp:.4f} bpp; file {parsed.file_bpp:.4f} bpp" in result.stdout

        result = runner.invoke(cli.app, ["decode", str(encoded), "-o", str(decoded)])
        assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asarray(Image.open(decoded)), pixels)


def test_truncated_container_is_one_line_exit_2(photo, tmp_path, monkeypatch, capsys):
    source, _ = photo
    encoded = tmp_path / "photo.enh"
    with registry.use_plugins(codecs={"toy-lossless": LosslessToyCodec}):
        assert run_main(monkeypatch, capsys, "encode", str(source), "-c", "toy-lossless", "-q", "1", "-o", str(encoded))[0] == 0
        truncated = tmp_path / "truncated.enh"
        truncated.write_bytes(encoded.read_bytes()[:-9])
        code, out, err = run_main(monkeypatch, capsys, "decode", str(truncated), "-o", str(tmp_path / "out.png"))
    assert code == 2 and out == ""
    assert err == f"enhance: {truncated}: CRC32 mismatch: the file is truncated or corrupt\n"
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["decode", "{tmp}/absent.jpg", "-o", "{tmp}/out.png"], "absent.jpg: cannot be read"),
        (["decode", "{tmp}/photo.png", "-o", "{tmp}/out.png"], "neither an enhance container nor a known image format"),
        (["encode", "{tmp}/photo.png", "-c", "no-such-codec", "-q", "1", "-o", "{tmp}/x"], "no codec named 'no-such-codec'"),
        (["encode", "{tmp}/photo.png", "-c", "jpeg", "-q", "80", "-o", "{tmp}/photo.png"], "refusing to overwrite the input"),
        (["encode", "{tmp}/notes.txt", "-c", "jpeg", "-q", "80", "-o", "{tmp}/x.jpg"], "notes.txt: not an image"),
        (["encode", "{tmp}/photo.png", "-c", "jpeg", "-q", "80", "-o", "{tmp}/photo.png/x.jpg"], "cannot write here"),
        (["encode", "{tmp}/photo.png", "-c", "webp", "-q", "50", "-o", "{tmp}/x.webp", "--caption", "hi"], "webp carries no caption"),
    ],
)
def test_bad_input_is_one_line_exit_2(photo, tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "notes.txt").write_text("not an image")
    before = photo[0].read_bytes()
    code, _, err = run_main(monkeypatch, capsys, *[arg.format(tmp=tmp_path) for arg in args])
    assert code == 2
    assert err.startswith("enhance: ") and err.count("\n") == 1 and message in err
    assert photo[0].read_bytes() == before


def test_quality_must_be_a_number(photo, tmp_path):
    result = runner.invoke(cli.app, ["encode", str(photo[0]), "-c", "jpeg", "-q", "eighty", "-o", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2 and "'eighty' is not a number" in result.output
    assert not (tmp_path / "x.jpg").exists()


def test_truncated_jpeg_from_the_installed_command(photo, tmp_path):
    source, pixels = photo
    encoded = tmp_path / "photo.jpg"
    encoded.write_bytes(encode_bitstream(pixels, "jpeg", 80)[:200])
    completed = subprocess.run(
        [sys.executable, "-c", "from enhance.cli import main; main()", "decode", str(encoded), "-o", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith(f"enhance: {encoded}: ") and completed.stderr.count("\n") == 1
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out.png").exists()


# --- the library calls behind the commands ---------------------------------------------


class ToyFullCodec:
    """A generative codec stand-in: stores a 2-byte mean colour, decodes to a seeded noisy field."""

    name = "toy-full"
    rate_range = (0.0, 1.0)
    rate_unit = "bpp"

    @classmethod
    def available(cls):
        return True, ""

    def encode(self, image, rate):
        return bytes([int(image.mean()), int(rate * 255)])

    def decode(self, data, *, steps=None, seed=0):
        rng = np.random.default_rng(seed)
        self.last_steps = steps
        return np.clip(data[0] + rng.normal(0, 5, (33, 47, 3)), 0, 255).astype(np.uint8)


def test_full_codec_goes_in_a_container_and_gets_steps_and_seed():
    pixels = natural_image(33, 47)
    with registry.use_plugins(full_codecs={"toy-full": ToyFullCodec}):
        data = encode_bitstream(pixels, "toy-full", 0.5)
        parsed = container.unpack(data)
        assert (parsed.codec, parsed.payload, parsed.file_size) == ("toy-full", bytes([int(pixels.mean()), 127]), len(data))
        first = decode_bitstream(data, steps=3, seed=1)
        assert first.shape == (33, 47, 3)
        np.testing.assert_array_equal(first, decode_bitstream(data, steps=3, seed=1))
        assert not np.array_equal(first, decode_bitstream(data, steps=3, seed=2))


def test_header_that_disagrees_with_the_payload_is_a_container_error():
    pixels = natural_image(33, 47)
    with registry.use_plugins(codecs={"toy-lossless": LosslessToyCodec}):
        payload = container.unpack(encode_bitstream(pixels, "toy-lossless", 1)).payload
        lying = container.pack("toy-lossless", 48, 33, payload)
        with pytest.raises(ContainerError, match="lie.enh: toy-lossless decoded 47x33 pixels, the header says 48x33"):
            decode_bitstream(lying, source="lie.enh")
    with pytest.raises(CodecUnavailable, match="lie.enh needs codec 'toy-lossless'"):
        decode_bitstream(lying, source="lie.enh")


@pytest.mark.parametrize("name", ["jpeg", "webp", "avif", "jpeg2000", "jxl", "heic"])
def test_native_formats_are_recognised_by_magic(name):
    codec = registry.get_codec(name)
    usable, reason = codec.available()
    if not usable:
        pytest.skip(f"{name} is not usable here: {reason}")
    pixels = natural_image(33, 47)
    data = encode_bitstream(pixels, name, codec.rate_range[1] if codec.higher_rate_is_better else codec.rate_range[0])
    assert native_codec(data) == name
    assert decode_bitstream(data).shape == (33, 47, 3)


def test_magic_detection_without_codecs():
    assert native_codec(b"BPG\xfb\x00") == "bpg"
    ftyp = lambda major, *compatible: (16 + 4 * len(compatible)).to_bytes(4, "big") + b"ftyp" + major + b"\0\0\0\0" + b"".join(compatible)
    assert native_codec(ftyp(b"mif1", b"mif1", b"avif", b"miaf")) == "avif"
    assert native_codec(ftyp(b"heic", b"mif1", b"heic")) == "heic"
    assert native_codec(ftyp(b"isom", b"mp41")) is None
    assert native_codec(b"ENH\x01") is None
    assert native_codec(b"") is None


def test_encoding_a_file_applies_its_exif_orientation(tmp_path):
    pixels = natural_image(33, 47)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned 90 degrees clockwise
    source = tmp_path / "turned.png"
    Image.fromarray(pixels).save(source, exif=exif)
    with registry.use_plugins(codecs={"toy-lossless": LosslessToyCodec}):
        data = encode_bitstream(source, "toy-lossless", 1)
        np.testing.assert_array_equal(decode_bitstream(data), np.rot90(pixels, k=-1))
    parsed = container.unpack(data)
    assert (parsed.width, parsed.height) == (33, 47)
