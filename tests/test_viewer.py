import configparser
import io
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import enhance
from conftest import make_jpeg
from enhance import cli, viewer
from enhance.image import TEMP_SUFFIX

CLI = [sys.executable, "-c", "from enhance.cli import main; main()"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "decoded"


@pytest.fixture
def counted(monkeypatch):
    """Counts real enhancements, so a cache hit is seen as none."""
    calls = []
    original = viewer.enhance_bytes

    def counting(data, **options):
        calls.append(options["path"])
        return original(data, **options)

    monkeypatch.setattr(viewer, "enhance_bytes", counting)
    return calls


def test_open_enhances_once_then_reads_the_cache(tmp_path, tiny_bundle, cache_dir, counted):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("rotated", 33, 47, seed=4))  # orientation 6
    first = enhance.open(photo, model=tiny_bundle)
    assert first.mode == "RGB" and first.size == (33, 47)  # turned once, for display
    assert first.getexif().get(0x0112, 1) == 1
    again = enhance.open(photo, model=tiny_bundle)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert len(counted) == 1
    entries = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert len(entries) == 1 and entries[0].suffix == ".png" and not entries[0].name.endswith(TEMP_SUFFIX)

    # Anything that changes the result changes the key.
    enhance.open(photo, model=tiny_bundle, seed=1)
    enhance.open(photo, model=tiny_bundle, consistent=True)
    photo.write_bytes(make_jpeg("rotated", 33, 47, seed=11))
    enhance.open(photo, model=tiny_bundle)
    assert len(counted) == 4
    # And cache=False neither reads nor writes it.
    enhance.open(photo, model=tiny_bundle, cache=False)
    assert len(counted) == 5 and len([p for p in cache_dir.rglob("*") if p.is_file()]) == 4


def test_open_array_is_rgb_and_open_keeps_greyscale(tmp_path, tiny_bundle, cache_dir):
    grey = tmp_path / "grey.jpg"
    grey.write_bytes(make_jpeg("grey", 40, 24))
    assert enhance.open(grey, model=tiny_bundle).mode == "L"
    array = enhance.open_array(grey, model=tiny_bundle)
    assert array.dtype == np.uint8 and array.shape == (40, 24, 3)
    assert (array[..., 0] == array[..., 2]).all()


def test_open_rejects_what_is_not_a_jpeg(tmp_path, tiny_bundle, cache_dir):
    png = tmp_path / "picture.png"
    Image.new("RGB", (8, 8)).save(png)
    with pytest.raises(enhance.errors.BadInput, match="not a JPEG"):
        enhance.open(png, model=tiny_bundle)


def test_decode_enhanced_writes_binary_png_to_stdout(tmp_path, tiny_bundle, cache_dir):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("icc", 33, 47))
    env = {**os.environ, "ENHANCE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(CLI + ["decode-enhanced", str(photo), "-o", "-", "--model", str(tiny_bundle)], capture_output=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.startswith(b"\x89PNG\r\n\x1a\n")
    from_stdout = Image.open(io.BytesIO(result.stdout))
    expected = Image.open(io.BytesIO(viewer.enhanced_png(photo, model=tiny_bundle, cache=False)))
    np.testing.assert_array_equal(np.asarray(from_stdout), np.asarray(expected))
    assert from_stdout.info["icc_profile"] == expected.info["icc_profile"]


def test_decode_enhanced_to_a_file(tmp_path, tiny_bundle, cache_dir):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg("420", 33, 47))
    result = CliRunner().invoke(cli.app, ["decode-enhanced", str(photo), "-o", str(tmp_path / "out.png"), "--model", str(tiny_bundle)])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out.png").size == (47, 33)


# --- XDG thumbnailer -----------------------------------------------------------------------


def expand_exec(exec_line: str, *, input_path: Path, output_path: Path, size: int) -> list[str]:
    """The thumbnailer spec's expansion, as GNOME does it: split the line like a shell, then replace
    %i (input path), %u (input URI), %o (output path), %s (size) and %% inside each argument."""
    values = {"i": str(input_path), "u": input_path.as_uri(), "o": str(output_path), "s": str(size), "%": "%"}
    argv = []
    for argument in shlex.split(exec_line):
        expanded, index = "", 0
        while index < len(argument):
            if argument[index] == "%" and index + 1 < len(argument):
                expanded += values[argument[index + 1]]
                index += 2
            else:
                expanded += argument[index]
                index += 1
        argv.append(expanded)
    return argv


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser["Thumbnailer Entry"]


def test_the_installed_thumbnailer_runs_as_the_spec_expands_it(tmp_path, tiny_bundle):
    executable = Path(sys.executable).parent / "enhance"
    if not executable.is_file():
        pytest.skip("the enhance console script is not installed beside this Python")
    installed = viewer.install_thumbnailer(data_home=tmp_path / "share", executable=str(executable))
    assert installed == tmp_path / "share" / "thumbnailers" / "enhance.thumbnailer"
    entry = read_entry(installed)
    assert entry["MimeType"] == "image/jpeg;"
    assert Path(entry["TryExec"]) == executable and os.access(entry["TryExec"], os.X_OK)

    photos = tmp_path / "My Photos"  # a space, as real paths have
    photos.mkdir()
    photo = photos / "holiday.jpg"
    photo.write_bytes(make_jpeg("rotated", 60, 40, seed=4))  # displayed 40 high, 60 wide
    thumbnail = tmp_path / "thumb dir" / "out.png"
    thumbnail.parent.mkdir()
    argv = expand_exec(entry["Exec"], input_path=photo, output_path=thumbnail, size=32)
    env = {**os.environ, "ENHANCE_DIRAC_JPEG": str(tiny_bundle), "ENHANCE_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    image = Image.open(thumbnail)
    assert image.format == "PNG" and image.size == (32, 21)


def test_thumbnailer_install_command_uses_xdg_data_home(tmp_path):
    result = CliRunner().invoke(cli.app, ["thumbnailer", "install"], env={"XDG_DATA_HOME": str(tmp_path / "data")})
    assert result.exit_code == 0, result.output
    installed = tmp_path / "data" / "thumbnailers" / "enhance.thumbnailer"
    assert result.stdout.strip() == str(installed)
    entry = read_entry(installed)
    assert entry["Exec"].endswith(" thumbnail -s %s %i %o")


def test_the_shipped_template_is_a_valid_entry():
    template = Path(viewer.__file__).parent / "data" / viewer.THUMBNAILER_FILE
    entry = read_entry(template)
    assert entry["TryExec"] == "enhance" and entry["Exec"] == "enhance thumbnail -s %s %i %o"
    assert "image/jpeg" in entry["MimeType"].split(";")
    assert viewer.thumbnailer_entry("/opt/my tools/enhance").splitlines()[2] == "Exec='/opt/my tools/enhance' thumbnail -s %s %i %o"
