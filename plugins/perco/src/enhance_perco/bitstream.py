"""PerCo's payload (inside the enhance container), version 2::

    version        1 byte   2 (version 1, still read, has no statistics)
    height, width  varints  1 .. MAX_SIDE pixels
    level, flags   1 byte   rate level (0-based) in the low nibble; bit 4: a caption follows
    statistics     1 byte per latent channel: its 4-bit mean and 4-bit standard deviation (statistics.py)
    indices        the global indices, then the local grid's in row-major order, each in exactly
                   log2(codebook size) bits, most significant bit first, zero-padded to a byte
    caption        (flag only) varint length + zlib level 9 of its UTF-8 text

Uniform index coding, as the reference implementation does: every index costs log2(V) bits.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from enhance.errors import BadInput
from enhance.framing import ByteReader, ByteWriter
from enhance.limits import check_pixels

VERSION = 2
READS = (1, 2)
MAX_SIDE = 1 << 16
FLAG_CAPTION = 0x10
MAX_CAPTION_BYTES = 4096


@dataclass(frozen=True)
class Payload:
    height: int
    width: int
    level: int
    global_indices: np.ndarray  # G
    local_indices: np.ndarray  # h x w
    statistics: np.ndarray | None  # uint8, one per latent channel; None in version 1
    caption: str | None = None


def pack_indices(values: np.ndarray, bits: int) -> bytes:
    values = values.reshape(-1).astype(np.uint32)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    return np.packbits(((values[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)).tobytes()


def unpack_indices(data: bytes, count: int, bits: int) -> np.ndarray:
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits].reshape(count, bits)
    return (flat.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(axis=1)


def write(payload: Payload, global_bits: int, local_bits: int) -> bytes:
    writer = ByteWriter()
    writer.u8(VERSION)
    writer.varint(payload.height)
    writer.varint(payload.width)
    writer.u8(payload.level | (FLAG_CAPTION if payload.caption is not None else 0))
    for byte in payload.statistics:
        writer.u8(int(byte))
    bits = np.concatenate([
        np.unpackbits(np.frombuffer(pack_indices(payload.global_indices, global_bits), np.uint8))[: payload.global_indices.size * global_bits],
        np.unpackbits(np.frombuffer(pack_indices(payload.local_indices, local_bits), np.uint8))[: payload.local_indices.size * local_bits],
    ])
    for byte in np.packbits(bits).tobytes():
        writer.u8(byte)
    if payload.caption is not None:
        writer.blob(zlib.compress(payload.caption.encode("utf-8"), 9))
    return writer.getvalue()


def read(data: bytes, *, grid, levels: int, channels: int, global_codes: int, global_bits: int, local_bits, max_pixels: int) -> Payload:
    """`grid(level, height, width) -> (h, w)` and `local_bits(level)` come from the model's config."""
    reader = ByteReader(data, "perco payload")
    version = reader.u8("version")
    if version not in READS:
        raise BadInput(f"perco payload: version {version} is not supported (this reader knows {', '.join(map(str, READS))})")
    height, width = reader.varint("height", 1, MAX_SIDE), reader.varint("width", 1, MAX_SIDE)
    check_pixels(width, height, "perco payload", max_pixels)
    byte = reader.u8("level")
    level, flags = byte & 0x0F, byte & 0xF0
    if level >= levels or flags & ~FLAG_CAPTION:
        raise BadInput(f"perco payload: level {level + 1} / flags {flags:#x} are not valid for this model")
    statistics = np.array([reader.u8("statistics") for _ in range(channels)], dtype=np.uint8) if version >= 2 else None
    rows, cols = grid(level, height, width)
    bits = local_bits(level)
    total = global_codes * global_bits + rows * cols * bits
    packed = bytes(reader.u8("indices") for _ in range(math.ceil(total / 8)))
    stream = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))
    global_indices = _indices(stream[: global_codes * global_bits], global_codes, global_bits)
    local_indices = _indices(stream[global_codes * global_bits : total], rows * cols, bits).reshape(rows, cols)
    caption = _caption(reader) if flags & FLAG_CAPTION else None
    reader.end()
    return Payload(height, width, level, global_indices, local_indices, statistics, caption)


def _indices(bits: np.ndarray, count: int, width: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    return (bits.reshape(count, width).astype(np.int64) << np.arange(width - 1, -1, -1)).sum(axis=1)


def _caption(reader: ByteReader) -> str:
    compressed = reader.blob("caption")
    try:
        decompressor = zlib.decompressobj()
        text = decompressor.decompress(compressed, MAX_CAPTION_BYTES)
        if decompressor.unconsumed_tail or not decompressor.eof:
            raise BadInput(f"perco payload: the caption is longer than {MAX_CAPTION_BYTES} bytes or truncated")
        return text.decode("utf-8")
    except (zlib.error, UnicodeDecodeError) as error:
        raise BadInput(f"perco payload: corrupt caption ({error})") from None
