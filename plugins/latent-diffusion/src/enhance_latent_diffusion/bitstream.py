"""The codec's payload (inside the enhance container), version 2::

    version        1 byte   2 (version 1 coded the latent itself, without the transform)
    height, width  varints  1 .. MAX_SIDE pixels
    level          1 byte   rate level, 0-based
    timestep code  1 byte   the receiver starts denoising at timestep 4 * code
    step offsets   G/2 bytes (one offset for each group of code channels), two signed 4-bit
                   offsets a byte (offset 2i in the high nibble)
    strings        enhance.entropy framing: count 2, hyper-latent string, latent string

Nothing else: no pickle, no names that select code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from enhance.entropy import pack_strings, unpack_strings
from enhance.errors import BadInput
from enhance.framing import ByteReader, ByteWriter
from enhance.limits import check_pixels

VERSION = 2
MAX_SIDE = 1 << 16
TIMESTEP_UNIT = 4


@dataclass(frozen=True)
class Payload:
    height: int
    width: int
    level: int
    timestep_code: int
    offsets: np.ndarray  # int8, one per group of code channels, -8..7
    strings: list[bytes]


def _pack_nibbles(offsets: np.ndarray) -> bytes:
    unsigned = (offsets.astype(np.int64) & 0xF).reshape(-1, 2)
    return bytes((unsigned[:, 0] << 4 | unsigned[:, 1]).astype(np.uint8))


def _unpack_nibbles(data: bytes) -> np.ndarray:
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    pairs = np.stack([raw >> 4, raw & 0xF], axis=1).reshape(-1)
    return np.where(pairs >= 8, pairs - 16, pairs).astype(np.int8)


def write(payload: Payload) -> bytes:
    writer = ByteWriter()
    writer.u8(VERSION)
    writer.varint(payload.height)
    writer.varint(payload.width)
    writer.u8(payload.level)
    writer.u8(payload.timestep_code)
    for byte in _pack_nibbles(payload.offsets):
        writer.u8(byte)
    return pack_strings(payload.strings, writer)


def read(data: bytes, *, offset_count: int, levels: int, max_pixels: int) -> Payload:
    """Parses and checks a payload; anything malformed raises BadInput naming the field."""
    reader = ByteReader(data, "latent-diffusion payload")
    version = reader.u8("version")
    if version != VERSION:
        raise BadInput(f"latent-diffusion payload: version {version} is not supported (this reader knows {VERSION})")
    height = reader.varint("height", 1, MAX_SIDE)
    width = reader.varint("width", 1, MAX_SIDE)
    check_pixels(width, height, "latent-diffusion payload", max_pixels)
    level = reader.u8("level")
    if level >= levels:
        raise BadInput(f"latent-diffusion payload: rate level {level + 1} is not one of this model's 1..{levels}")
    timestep_code = reader.u8("timestep")
    offsets = _unpack_nibbles(bytes(reader.u8("step offsets") for _ in range(offset_count // 2)))
    strings = unpack_strings(reader, 2)
    reader.end()
    return Payload(height, width, level, timestep_code, offsets, strings)
