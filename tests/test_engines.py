"""Choosing an engine on the command line; what happens without Ray (no Ray needed here)."""

import sys

import pytest
from typer.testing import CliRunner

from conftest import make_jpeg
from enhance import cli
from enhance.engines import make_engine
from enhance.errors import EnhanceError


def test_ray_options_need_the_ray_engine_and_unknown_engines_are_refused():
    assert make_engine("local") is None
    with pytest.raises(EnhanceError, match="--address need --engine ray"):
        make_engine("local", address="auto")
    with pytest.raises(EnhanceError, match="unknown engine 'spark'"):
        make_engine("spark")


def test_without_ray_the_ray_engine_says_how_to_install_it(tmp_path, monkeypatch, tiny_bundle):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    source = tmp_path / "a.jpg"
    source.write_bytes(make_jpeg("420"))
    result = CliRunner().invoke(cli.app, ["run", str(source), "-o", str(tmp_path / "out"), "--model", str(tiny_bundle), "--engine", "ray"])
    assert isinstance(result.exception, EnhanceError) and "pip install 'enhance[ray]'" in str(result.exception)
    assert not (tmp_path / "out").exists()
