"""Issue 14, hostile files and outputs: special files, writing over inputs, unwritable places."""

from __future__ import annotations

import errno
import os
import sys

import pytest
from PIL import Image

from conftest import make_jpeg
from enhance import cli
from enhance.errors import BadInput, EnhanceError
from enhance.runs import run

CLI = [sys.executable, "-c", "from enhance.cli import main; main()"]


def run_main(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["enhance", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def special_folder(tmp_path):
    """A folder with one good JPEG, a FIFO named a.jpg, a symlink to /dev/zero and a symlink loop."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(make_jpeg("420"))
    os.mkfifo(folder / "a.jpg")
    os.symlink("/dev/zero", folder / "z.jpg")
    os.symlink(folder / "loop2.jpg", folder / "loop1.jpg")
    os.symlink(folder / "loop1.jpg", folder / "loop2.jpg")
    return folder


# --- hostile 3: only regular files are read, with a size bound ---------------------------


def test_special_files_fail_alone_with_their_reason(tmp_path, tiny_bundle):
    folder = special_folder(tmp_path)
    summary = run([folder], tmp_path / "out", model=tiny_bundle)
    reasons = {os.path.basename(result.input): result.reason for result in summary.failed}
    assert [os.path.basename(r.input) for r in summary.done] == ["good.jpg"]
    assert "FIFO" in reasons["a.jpg"] and "not a regular file" in reasons["a.jpg"]
    assert "a device" in reasons["z.jpg"]
    assert "symlink loop" in reasons["loop1.jpg"] and "symlink loop" in reasons["loop2.jpg"]
    assert len(summary.failed) == 4


@pytest.mark.parametrize("name, reason", [("a.jpg", "FIFO"), ("z.jpg", "a device"), ("loop1.jpg", "symlink loop")])
def test_decode_and_decode_enhanced_refuse_special_files(tmp_path, tiny_bundle, monkeypatch, capsys, cache_dir, name, reason):
    folder = special_folder(tmp_path)
    for command in (["decode", str(folder / name), "-o", str(tmp_path / "x.png")],
                    ["decode-enhanced", str(folder / name), "-o", str(tmp_path / "y.png"), "--model", str(tiny_bundle)]):
        code, _, err = run_main(monkeypatch, capsys, *command)
        assert code == 2 and reason in err and err.count("\n") == 1, err


def test_files_over_the_size_bound_are_refused_before_reading(tmp_path, monkeypatch):
    from enhance.image import read_file

    big = tmp_path / "big.jpg"
    big.write_bytes(make_jpeg("420") + b"\0" * (2 << 20))
    monkeypatch.setenv("ENHANCE_MAX_FILE_MB", "1")
    with pytest.raises(BadInput, match="over the input size limit of 1 MiB .*ENHANCE_MAX_FILE_MB"):
        read_file(big)
    monkeypatch.setenv("ENHANCE_MAX_FILE_MB", "4")
    assert len(read_file(big)) > 2 << 20


# --- hostile 1: no command writes over its input --------------------------------------------


@pytest.mark.parametrize("command", ["decode-enhanced", "thumbnail"])
def test_no_command_writes_over_its_input(tmp_path, tiny_bundle, monkeypatch, capsys, cache_dir, command):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_jpeg("420"))
    before = photo.read_bytes()
    os.link(photo, tmp_path / "hard.jpg")
    for target in (photo, tmp_path / "hard.jpg"):
        args = ["decode-enhanced", str(photo), "-o", str(target)] if command == "decode-enhanced" else ["thumbnail", str(photo), str(target)]
        code, _, err = run_main(monkeypatch, capsys, *args, "--model", str(tiny_bundle))
        assert code == 2 and "refusing to write over the input" in err, err
    assert photo.read_bytes() == before


# --- hostile 7: outputs that cannot be written ------------------------------------------------


def test_decode_enhanced_onto_a_full_disk_is_one_clean_line(tmp_path, tiny_bundle, monkeypatch, capsys, cache_dir):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_jpeg("420"))

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    code, _, err = run_main(monkeypatch, capsys, "decode-enhanced", str(photo), "-o", str(tmp_path / "o.png"), "--model", str(tiny_bundle))
    assert code == 2 and err == f"enhance: {tmp_path / 'o.png'}: cannot write here (No space left on device)\n"
    assert not list(tmp_path.glob(".o.png*"))


# --- newcomer 8: encode's output extension --------------------------------------------------


def test_encode_refuses_an_extension_of_another_format(tmp_path, monkeypatch, capsys):
    source = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), "red").save(source)
    code, _, err = run_main(monkeypatch, capsys, "encode", str(source), "-c", "webp", "-q", "40", "-o", str(tmp_path / "x.png"))
    assert code == 2 and "-c webp writes .webp files; name the output x.webp" in err
    assert not (tmp_path / "x.png").exists()
    code, _, _ = run_main(monkeypatch, capsys, "encode", str(source), "-c", "jpeg", "-q", "40", "-o", str(tmp_path / "x.JPEG"))
    assert code == 0 and Image.open(tmp_path / "x.JPEG").format == "JPEG"


# --- newcomer 2, hostile 10: options are checked before the model loads -------------------


@pytest.mark.parametrize(
    "option, message",
    [
        (["--device", "gpu"], "--device 'gpu': not a device; use cpu or cuda"),
        (["--device", "cuda"], "--device cuda: CUDA is not available"),
        (["--steps", "0"], "--steps 0: must be at least 1"),
        (["--tile", "100"], "--tile 100: must be a multiple of 16"),
        (["--format", "gif"], "--format 'gif': use one of png, webp, jpeg, tiff"),
    ],
)
def test_a_bad_option_is_one_line_exit_2_before_the_model_loads(tmp_path, monkeypatch, capsys, option, message):
    import torch

    if option == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_jpeg("420"))
    missing = str(tmp_path / "no-such-bundle")  # loading it would fail with another message
    for command in (["run", str(photo), "-o", str(tmp_path / "out")], ["decode-enhanced", str(photo), "-o", str(tmp_path / "o.png")]):
        if command[0] == "decode-enhanced" and option[0] == "--format":
            continue
        code, _, err = run_main(monkeypatch, capsys, *command, *option, "--model", missing)
        assert code == 2 and err.startswith("enhance: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_open_checks_its_options_and_empty_files_before_loading_the_model(tmp_path, monkeypatch, cache_dir):
    import enhance
    from enhance import viewer

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(viewer, "load_enhancer", no_model)
    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_jpeg("420"))
    with pytest.raises(EnhanceError, match="--steps must be a whole number, got '1'"):
        enhance.open(photo, steps="1")
    with pytest.raises(EnhanceError, match="--seed must be a whole number"):
        enhance.open(photo, seed=1.5)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="empty file"):
        enhance.open(empty)


# --- newcomer 8: enhance.open reads the cache before loading the model, and fills .info -----------


def test_open_on_a_cache_hit_does_not_load_the_model_and_says_what_made_it(tmp_path, tiny_bundle, monkeypatch, cache_dir):
    import enhance
    from enhance import viewer

    photo = tmp_path / "p.jpg"
    photo.write_bytes(make_jpeg("420"))
    first = enhance.open(photo, model=tiny_bundle, steps=1)
    assert first.info["enhance"]["cached"] is False and first.info["enhance"]["steps"] == 1
    viewer._enhancer.cache_clear()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded on a cache hit")

    monkeypatch.setattr(viewer, "load_enhancer", no_model)
    again = enhance.open(photo, model=tiny_bundle, steps=1)
    assert again.info["enhance"] == {**first.info["enhance"], "cached": True}
    assert again.info["enhance"]["model"] == str(tiny_bundle) and again.info["enhance"]["source"] == str(photo)


# --- hostile 9: outputs always open in Pillow, whatever ICC profile the input carries ---------------


def _jpeg_with_profile(size: int) -> bytes:
    import io

    from conftest import natural_image, srgb_profile

    profile = srgb_profile()
    padded = bytearray(profile + b"\0" * (size - len(profile)))
    padded[0:4] = size.to_bytes(4, "big")  # the header's own size field: a valid, if bloated, profile
    buffer = io.BytesIO()
    Image.fromarray(natural_image(24, 32)).save(buffer, "JPEG", icc_profile=bytes(padded))
    return buffer.getvalue()


@pytest.mark.parametrize("megabytes", [2, 15])
def test_a_huge_icc_profile_never_makes_an_output_unopenable(tmp_path, tiny_bundle, megabytes):
    photo = tmp_path / "p.jpg"
    photo.write_bytes(_jpeg_with_profile(megabytes << 20))
    for output_format, extension in (("png", ".png"), ("webp", ".webp"), ("jpeg", ".jpg"), ("tiff", ".tif")):
        summary = run([photo], tmp_path / output_format, model=tiny_bundle, steps=1, output_format=output_format)
        assert summary.ok, summary.failed
        with Image.open(tmp_path / output_format / f"p{extension}") as written:
            written.load()
            assert written.size == (32, 24)


# --- newcomer 8: --help at 80 columns never cuts an option name -----------------------------------


def _commands(group, path=()):
    import click

    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_help_at_80_columns_shows_every_option_name_whole():
    import typer
    from typer.testing import CliRunner

    root = typer.main.get_command(cli.app)
    for path, command in _commands(root):
        result = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        assert max(len(line) for line in result.output.splitlines()) <= 80, path
        for parameter in command.params:
            for name in getattr(parameter, "opts", []) + getattr(parameter, "secondary_opts", []):
                if name.startswith("-"):
                    assert name in result.output.replace("…", "\0"), (path, name)


def test_the_readme_says_what_consistent_does_in_compare():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "skips the JPEG consistency projection `enhance run` applies" not in readme
    assert "`--consistent` adds the JPEG consistency projection (off by default, as in `enhance run`)" in readme
