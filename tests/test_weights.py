import hashlib
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from enhance import weights
from enhance.errors import WeightsError

CONTENT = b"tiny weights \x00\x01\x02" * 1000
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own cache and no mirror or offline setting from the environment."""
    monkeypatch.setenv("ENHANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ENHANCE_MIRROR", raising=False)
    monkeypatch.delenv("ENHANCE_OFFLINE", raising=False)
    weights._verified.clear()


def write_lock(directory: Path, *rows: dict) -> Path:
    lines = []
    for row in rows:
        lines.append("[[file]]")
        for key, value in row.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {str(value).lower()}")
            else:
                lines.append(f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"')
    lock = directory / "weights.lock"
    lock.write_text("\n".join(lines) + "\n")
    return lock


def row(**overrides) -> dict:
    values = dict(bundle="tiny", path="model.bin", url="https://example.invalid/tiny/model.bin", sha256=SHA, size=len(CONTENT), license="MIT")
    values.update(overrides)
    return {key: value for key, value in values.items() if value is not None}


def put(path: Path, content: bytes = CONTENT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_load_lock_parses_rows(tmp_path):
    lock = write_lock(tmp_path, row(), row(path="sub/other.bin", sha256=None, sha256_prefix=SHA[:8], size=None))
    first, second = weights.load_lock(lock)
    assert (first.bundle, first.path, first.sha256, first.size, first.lock_dir) == ("tiny", "model.bin", SHA, len(CONTENT), tmp_path)
    assert (second.sha256, second.sha256_prefix, second.size) == (None, SHA[:8], None)


@pytest.mark.parametrize(
    "bad, reason",
    [
        (dict(sha256="abc"), "sha256 must be 64"),
        (dict(sha256=None), "exactly one of sha256"),
        (dict(sha256_prefix=SHA[:8]), "exactly one of sha256"),
        (dict(path="../escape.bin"), "relative path"),
        (dict(path="/etc/passwd"), "relative path"),
        (dict(url="ftp://example.invalid/x"), "url"),
        (dict(url="repo://../x"), "relative path"),
        (dict(licence="MIT"), "unknown keys"),
        (dict(size=-1), "size"),
    ],
)
def test_load_lock_rejects_bad_rows(tmp_path, bad, reason):
    with pytest.raises(WeightsError, match=reason):
        weights.load_lock(write_lock(tmp_path, row(**bad)))


def test_load_lock_rejects_duplicates_and_garbage(tmp_path):
    with pytest.raises(WeightsError, match="listed twice"):
        weights.load_lock(write_lock(tmp_path, row(), row()))
    (tmp_path / "weights.lock").write_text("[[file]\n")
    with pytest.raises(WeightsError, match="unreadable"):
        weights.load_lock(tmp_path / "weights.lock")
    with pytest.raises(WeightsError, match="no such"):
        weights.load_lock(tmp_path / "absent.lock")


def test_package_lock_is_valid():
    rows = weights.load_lock()
    assert all(r.license for r in rows)


def test_repo_file_is_found_beside_the_lock(tmp_path):
    put(tmp_path / "weights" / "tiny" / "model.bin")
    lock = write_lock(tmp_path, row(url="repo://weights/tiny/model.bin"))
    assert weights.resolve("tiny", "model.bin", lock=lock) == tmp_path / "weights" / "tiny" / "model.bin"
    [(found, status)] = weights.verify(lock=lock)
    assert status.ok and status.where == "repo" and SHA in status.detail


def test_cache_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    cached = put(tmp_path / "cache" / "weights" / "tiny" / "model.bin")
    lock = write_lock(tmp_path, row())
    assert weights.resolve("tiny", "model.bin", lock=lock) == cached
    assert weights.locate(weights.load_lock(lock)[0]) == ("cache", cached)


def test_xdg_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv("ENHANCE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights.cache_dir() == tmp_path / "xdg" / "enhance"


def test_hash_mismatch_names_bundle_expected_and_actual(tmp_path):
    wrong = CONTENT[:-1] + b"\xff"
    put(tmp_path / "cache" / "weights" / "tiny" / "model.bin", wrong)
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError) as caught:
        weights.resolve("tiny", "model.bin", lock=lock)
    message = str(caught.value)
    assert "tiny/model.bin" in message and SHA in message and hashlib.sha256(wrong).hexdigest() in message
    assert "enhance weights fetch tiny" in message
    [(_, status)] = weights.verify("tiny", lock=lock)
    assert not status.ok and "expected" in status.detail


def test_size_mismatch(tmp_path):
    put(tmp_path / "cache" / "weights" / "tiny" / "model.bin", CONTENT + b"x")
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError, match=f"size {len(CONTENT) + 1} bytes, expected {len(CONTENT)}"):
        weights.resolve("tiny", "model.bin", lock=lock)


def test_sha256_prefix_rows(tmp_path):
    put(tmp_path / "cache" / "weights" / "tiny" / "model.bin")
    good = write_lock(tmp_path, row(sha256=None, sha256_prefix=SHA[:8], size=None))
    assert weights.resolve("tiny", "model.bin", lock=good).read_bytes() == CONTENT
    weights._verified.clear()
    wrong_prefix = "0" * 8 if not SHA.startswith("0" * 8) else "f" * 8
    bad = write_lock(tmp_path, row(sha256=None, sha256_prefix=wrong_prefix, size=None))
    with pytest.raises(WeightsError, match=f"expected one starting {wrong_prefix}"):
        weights.resolve("tiny", "model.bin", lock=bad)


def test_missing_file_while_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError) as caught:
        weights.resolve("tiny", "model.bin", lock=lock)
    message = str(caught.value)
    assert "tiny" in message and SHA in message and "enhance weights fetch tiny" in message
    assert not (tmp_path / "cache" / "weights" / "tiny" / "model.bin").exists()
    [(_, status)] = weights.verify(lock=lock)
    # An optional file that is absent is reported, but is not a failure.
    assert (status.ok, status.missing, status.label) == (True, True, "absent (optional)")
    assert "enhance weights fetch tiny" in status.detail


def test_unknown_bundle_and_path(tmp_path):
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError, match="no bundle 'other'.*tiny"):
        weights.resolve("other", "model.bin", lock=lock)
    with pytest.raises(WeightsError, match="no file 'x.bin'"):
        weights.resolve("tiny", "x.bin", lock=lock)


def test_mirror_directory_is_used_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    mirrored = put(tmp_path / "mirror" / "tiny" / "model.bin")
    monkeypatch.setenv("ENHANCE_MIRROR", str(tmp_path / "mirror"))
    lock = write_lock(tmp_path, row())
    assert weights.resolve("tiny", "model.bin", lock=lock) == mirrored


def test_file_url_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    mirrored = put(tmp_path / "mirror" / "tiny" / "model.bin")
    monkeypatch.setenv("ENHANCE_MIRROR", (tmp_path / "mirror").as_uri())
    lock = write_lock(tmp_path, row())
    assert weights.resolve("tiny", "model.bin", lock=lock) == mirrored


def test_download_from_file_upstream_goes_through_a_temporary_file(tmp_path, monkeypatch):
    upstream = put(tmp_path / "upstream" / "model.bin")
    lock = write_lock(tmp_path, row(url=upstream.as_uri()))
    renames = []
    real_replace = os.replace

    def recording_replace(source, target):
        renames.append((Path(source), Path(target)))
        real_replace(source, target)

    monkeypatch.setattr(weights.os, "replace", recording_replace)
    [(_, path)] = weights.fetch("tiny", lock=lock)
    target = tmp_path / "cache" / "weights" / "tiny" / "model.bin"
    assert path == target and target.read_bytes() == CONTENT
    [(temporary, renamed)] = renames
    assert renamed == target and temporary.parent == target.parent and temporary.name.endswith(".part")
    assert not temporary.exists()
    # Now cached: resolving again neither downloads nor renames.
    upstream.unlink()
    assert weights.resolve("tiny", "model.bin", lock=lock) == target
    assert len(renames) == 1


def test_bad_download_leaves_nothing_behind(tmp_path):
    upstream = put(tmp_path / "upstream" / "model.bin", CONTENT[:-3] + b"abc")
    lock = write_lock(tmp_path, row(url=upstream.as_uri()))
    with pytest.raises(WeightsError, match=f"tiny/model.bin.*expected {SHA}"):
        weights.resolve("tiny", "model.bin", lock=lock)
    put(upstream, CONTENT + b"more")
    with pytest.raises(WeightsError, match="more than the expected"):
        weights.resolve("tiny", "model.bin", lock=lock)
    assert list((tmp_path / "cache" / "weights" / "tiny").iterdir()) == []


def test_fetch_replaces_a_bad_cached_copy_and_falls_back_from_the_mirror(tmp_path, monkeypatch):
    put(tmp_path / "cache" / "weights" / "tiny" / "model.bin", b"stale")
    upstream = put(tmp_path / "upstream" / "model.bin")
    # An http mirror that cannot answer: the download falls back to upstream.
    monkeypatch.setenv("ENHANCE_MIRROR", "http://127.0.0.1:9/")
    lock = write_lock(tmp_path, row(url=upstream.as_uri(), size=None))
    [(_, path)] = weights.fetch(lock=lock)
    assert path.read_bytes() == CONTENT


def test_network_is_refused_offline_even_for_an_http_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    monkeypatch.setenv("ENHANCE_MIRROR", "http://127.0.0.1:9/")
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError, match="ENHANCE_OFFLINE=1"):
        weights.fetch("tiny", lock=lock)


def test_repo_row_without_a_copy_has_no_download_source(tmp_path):
    lock = write_lock(tmp_path, row(url="repo://weights/tiny/model.bin"))
    with pytest.raises(WeightsError, match="no download source"):
        weights.resolve("tiny", "model.bin", lock=lock)


def test_load_safetensors_strictly(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(2), "b": torch.ones(3)}, str(path))
    assert set(weights.load_safetensors(path, expected_keys=["a", "b"])) == {"a", "b"}
    with pytest.raises(WeightsError, match=r"missing \['c'\], unexpected \['b'\]"):
        weights.load_safetensors(path, expected_keys=["a", "c"])
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(WeightsError, match="not a readable safetensors"):
        weights.load_safetensors(path)


def test_cli_list_fetch_verify(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from enhance.cli import app

    upstream = put(tmp_path / "upstream" / "model.bin")
    lock = write_lock(
        tmp_path, row(url=upstream.as_uri(), required=True), row(bundle="big", sha256=None, sha256_prefix=SHA[:8], size=None)
    )
    monkeypatch.setattr(weights, "default_lock_path", lambda: lock)
    monkeypatch.setenv("ENHANCE_PLUGINS", "")  # the installed plugins' own locks would be listed too
    runner = CliRunner()

    listing = runner.invoke(app, ["weights", "list"])
    assert listing.exit_code == 0, listing.output
    assert listing.stdout.splitlines() == [
        "bundle  path       size   licence  found",
        f"tiny    model.bin  {len(CONTENT)}  MIT      missing",
        "big     model.bin  ?      MIT      missing",
    ]
    verified = runner.invoke(app, ["weights", "verify"])
    # The required file is absent: a failure; the optional one is only reported.
    assert verified.exit_code == 1, verified.output
    assert verified.stdout.splitlines()[0].startswith("MISSING (required)  tiny/model.bin [required]")
    assert verified.stdout.splitlines()[1].startswith("absent (optional)  big/model.bin [optional]")
    assert verified.stdout.splitlines()[-1] == "0 ok, 1 optional absent, 1 failed"

    fetched = runner.invoke(app, ["weights", "fetch", "tiny"])
    assert fetched.exit_code == 0, fetched.output
    assert fetched.stdout == f"tiny/model.bin: {tmp_path / 'cache' / 'weights' / 'tiny' / 'model.bin'}\n"
    assert f"tiny    model.bin  {len(CONTENT)}  MIT      cache" in runner.invoke(app, ["weights", "list"]).stdout
    verified = runner.invoke(app, ["weights", "verify", "tiny"])
    assert verified.exit_code == 0 and verified.stdout.startswith("ok  tiny/model.bin [required] (cache: ")
    # Everything required is present and right; the optional bundle's absence does not fail.
    verified = runner.invoke(app, ["weights", "verify"])
    assert verified.exit_code == 0, verified.output
    assert verified.stdout.splitlines()[-1] == "1 ok, 1 optional absent, 0 failed"
    # A present optional file that is wrong does.
    put(tmp_path / "cache" / "weights" / "big" / "model.bin", b"not the weights")
    verified = runner.invoke(app, ["weights", "verify"])
    assert verified.exit_code == 1 and "FAIL  big/model.bin [optional]" in verified.stdout


def test_shipped_lock_marks_what_the_installed_features_need():
    rows = weights.load_lock()
    assert {r.bundle for r in rows if r.required} == {"dirac-jpeg", "taef2", "prior-taef2"}
    assert all(r.url.startswith("repo://") for r in rows if r.required)
    # The shipped files themselves are all present and match (a fresh install verifies clean).
    for found, status in weights.verify():
        if found.required:
            assert status.ok and not status.missing, (found.path, status.detail)


def test_tampered_shipped_file_is_reported_as_tampered(tmp_path):
    put(tmp_path / "weights" / "tiny" / "model.bin", CONTENT[:-1] + b"!")
    lock = write_lock(tmp_path, row(url="repo://weights/tiny/model.bin", required=True))
    with pytest.raises(WeightsError, match="tampered with or damaged") as caught:
        weights.resolve("tiny", "model.bin", lock=lock)
    assert "update weights.lock" not in str(caught.value)
    [(_, status)] = weights.verify(lock=lock)
    assert not status.ok and "tampered" in status.detail


@pytest.mark.parametrize(
    "error",
    [
        "dns",
        "http",
        "reset",
    ],
)
def test_every_download_failure_carries_the_same_help(tmp_path, monkeypatch, error):
    import http.client
    import socket
    import urllib.error

    failures = {
        "dns": urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        "http": urllib.error.HTTPError("https://example.invalid/tiny/model.bin", 503, "Service Unavailable", {}, None),
        "reset": http.client.IncompleteRead(b"partial"),
    }

    def refuse(*args, **kwargs):
        raise failures[error]

    monkeypatch.setattr(weights.urllib.request, "urlopen", refuse)
    lock = write_lock(tmp_path, row())
    with pytest.raises(WeightsError) as caught:
        weights.resolve("tiny", "model.bin", lock=lock)
    message = str(caught.value)
    assert "could not download" in message
    assert "enhance weights fetch tiny" in message and "ENHANCE_MIRROR" in message
    monkeypatch.setenv("ENHANCE_OFFLINE", "1")
    with pytest.raises(WeightsError) as offline:
        weights.resolve("tiny", "model.bin", lock=lock)
    assert weights.download_help(weights.load_lock(lock)[0]) in str(offline.value) and weights.download_help(
        weights.load_lock(lock)[0]
    ) in message


def test_neural_codecs_are_unavailable_without_their_weights(tmp_path):
    from enhance.codecs import describe_codecs
    from enhance.registry import get_codec

    lock = write_lock(tmp_path, row(bundle="compressai-mbt2018-mean", path="mbt2018-mean-mse-1.pth.tar"))
    usable, reason = get_codec("mbt2018-mean", weights_lock=lock).available()
    assert not usable and "enhance weights fetch compressai-mbt2018-mean" in reason and "ENHANCE_MIRROR" in reason
    put(tmp_path / "cache" / "weights" / "compressai-mbt2018-mean" / "mbt2018-mean-mse-1.pth.tar")
    assert get_codec("mbt2018-mean", weights_lock=lock).available() == (True, "")
    # The shipped lock, with an empty cache: no neural codec is listed as available.
    described = {d.name: d for d in describe_codecs()}
    for name in ("bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor"):
        assert not described[name].available and "enhance weights fetch" in described[name].reason
