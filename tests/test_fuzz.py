"""Fuzz: mutated and truncated files of every input kind through the public decode entry points.

Each kind gets FUZZ_CASES seeded mutants of a small (33x47) valid file: truncations, byte
flips, insertions and deletions, spliced repeats; containers are also mutated inside a
re-packed container with a valid CRC, so that the mutations reach the codec's own payload
parser. Every case must end in an `enhance.errors.EnhanceError` or a valid image (uint8
HxWx3 within the pixel limit), within a per-case time limit; a case that hangs past the
watchdog ends the test process with a traceback instead of hanging the suite.

The pixel limit is lowered to FUZZ_MEGAPIXELS, which bounds what any one case may
allocate for pixels; the test also checks that the process's peak memory grows by less
than MEMORY_BOUND_MB.
"""

from __future__ import annotations

import faulthandler
import resource
import time

import numpy as np
import pytest
from conftest import make_jpeg, natural_image

import enhance
from enhance import container
from enhance.errors import EnhanceError
from enhance.image import decode_image

FUZZ_CASES = 1000
FUZZ_MEGAPIXELS = 1.0
CASE_LIMIT_S = 2.0  # a case slower than this fails the test
WATCHDOG_S = 60.0  # a case stuck this long (in C code, where no Python timer reaches) ends the process
MEMORY_BOUND_MB = 768
SIZE = (33, 47)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation: truncate, flip, insert, delete, duplicate a span, or several of these."""
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        choice = int(rng.integers(0, 6))
        if not data:
            break
        at = int(rng.integers(0, len(data)))
        if choice == 0:
            del data[at:]
        elif choice == 1:
            for _ in range(int(rng.integers(1, 9))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        elif choice == 2:
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        elif choice == 3:
            del data[at : at + int(rng.integers(1, 16))]
        elif choice == 4:
            span = data[at : at + int(rng.integers(1, 64))]
            data[at:at] = span * int(rng.integers(1, 4))
        else:
            # Bit flips near the start, where headers and sizes live.
            for _ in range(int(rng.integers(1, 4))):
                position = int(rng.integers(0, min(len(data), 64)))
                data[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(data)


def _check_pixels(pixels) -> None:
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert 1 <= pixels.shape[0] * pixels.shape[1] <= FUZZ_MEGAPIXELS * 1e6


def _decode_image_pixels(data: bytes):
    return decode_image(data, path="fuzz.jpg").pixels


def _valid_files() -> dict[str, tuple[bytes, list]]:
    """Each input kind: (a valid file, the public entry points it goes through)."""
    from test_codecs import make_codec

    image = natural_image(*SIZE)
    files = {"jpeg": (make_jpeg("420"), [enhance.decode, _decode_image_pixels])}
    for name, quality in (("webp", 50), ("avif", 50), ("jpeg2000", 35.0), ("jxl", 75), ("heic", 50)):
        codec = make_codec(name)
        if codec.available()[0]:
            files[name] = (codec.encode(image, quality), [enhance.decode])
    return files


def _neural_codecs() -> dict:
    from test_codecs import make_codec

    return {name: make_codec(name) for name in ("bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")}


def _run_cases(kind: str, cases, entry_points) -> list[str]:
    failures = []
    for seed, data in cases:
        for entry in entry_points:
            faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
            start = time.perf_counter()
            try:
                _check_pixels(entry(data))
            except EnhanceError:
                pass
            except Exception as error:  # anything else is a bug: record it and go on
                failures.append(f"{kind} seed {seed} {getattr(entry, '__name__', entry)}: {type(error).__name__}: {error}")
            finally:
                faulthandler.cancel_dump_traceback_later()
            elapsed = time.perf_counter() - start
            if elapsed > CASE_LIMIT_S:
                failures.append(f"{kind} seed {seed}: took {elapsed:.1f} s (limit {CASE_LIMIT_S} s)")
    return failures


@pytest.fixture
def fuzz_limits(monkeypatch):
    monkeypatch.setenv("ENHANCE_MAX_MEGAPIXELS", str(FUZZ_MEGAPIXELS))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mb < MEMORY_BOUND_MB, f"peak memory grew by {grown_mb:.0f} MB"


def test_fuzz_native_files(fuzz_limits):
    failures = []
    counts = {}
    for kind, (valid, entry_points) in _valid_files().items():
        _check_pixels(enhance.decode(valid))
        rng = np.random.default_rng(sum(kind.encode()))
        cases = [(seed, mutate(valid, rng)) for seed in range(FUZZ_CASES)]
        counts[kind] = len(cases)
        failures += _run_cases(kind, cases, entry_points)
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n".join(failures[:20])
    assert {"jpeg", "webp", "avif", "jpeg2000", "jxl", "heic"} <= set(counts)
    assert min(counts.values()) >= 1000


def test_fuzz_containers(fuzz_limits, monkeypatch):
    """Neural streams in the enhance container: the container's own bytes, and payloads re-packed with a valid CRC."""
    from enhance import registry

    codecs = _neural_codecs()
    real = registry.container_codec

    def container_codec(name, **kwargs):
        # The container's codec as the tests build it (tiny random weights; no downloads).
        if name in codecs:
            return "codec", lambda: codecs[name]
        return real(name, **kwargs)

    monkeypatch.setattr(registry, "container_codec", container_codec)
    failures = []
    image = natural_image(*SIZE)
    height, width = SIZE
    for name, codec in codecs.items():
        payload = codec.encode(image, 3)
        params = container.encode_params({"quality": "3"})
        valid = container.pack(name, width, height, payload, params=params)
        _check_pixels(enhance.decode(valid))
        rng = np.random.default_rng(sum(name.encode()))
        cases = []
        for seed in range(FUZZ_CASES):
            if seed % 2:
                cases.append((seed, mutate(valid, rng)))
            else:
                mutated = mutate(payload, rng)
                crc = bool(rng.integers(0, 2))
                cases.append((seed, container.pack(name, width, height, mutated, params=params, crc=crc)))
        failures += _run_cases(f"container[{name}]", cases, [enhance.decode])
    assert not failures, f"{len(failures)} failures, first ones:\n" + "\n".join(failures[:20])
