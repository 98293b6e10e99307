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
from conftest import natural_image

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
