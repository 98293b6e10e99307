"""The versioned container for codecs that have no file format of their own.

Neural codecs, raw BPG/VTM streams and full generative codecs (PerCo-like, ~150 bytes
per image) produce a bare payload; the container adds what a decoder needs to pick the
codec and to check the bytes, in about 12 bytes (16 with the CRC).

Layout, version 1 (varints are unsigned LEB128, minimal length)::

    magic         3 bytes  b"ENH"
    version       1 byte   1
    codec id      varint   from CODEC_IDS; id 0 is followed by varint length + UTF-8 name
    width         varint   1 .. MAX_SIDE
    height        varint   1 .. MAX_SIDE
    flags         1 byte   bit 0: CRC32 present; other bits must be zero
    params        varint length + bytes
    header check  1 byte   CRC-8 over every byte above
    payload       the rest of the file (less the CRC32)
    crc32         4 bytes, big-endian, over every byte before it (only when flag bit 0 is set)

Why a header check on top of the CRC32: without it, corrupting the flags byte to
"no CRC" would turn a protected file into an unprotected one that parses, so a CRC
could not promise to catch every corruption. The header check also protects the codec
id and dimensions of CRC-less files, whose payload alone stays unchecked.

Params are opaque bytes at this layer. `encode_params`/`decode_params` define the
small key/value encoding the library writes into them (the rate, as "rate"); they
reach a codec's `decode` when it takes a `params` keyword (see `enhance.protocols`).

A codec's id comes from CODEC_IDS; a plugin declares its own (`container_id`), which
must be the table's id for its name (`checked_codec_id`), so ids stay unique and a
file decodes the same everywhere.

Reading never unpickles and never imports anything: the codec id or name is only a key
that `enhance.registry` maps to a registered codec.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import ContainerError
from .framing import ByteReader, encode_varint

MAGIC = b"ENH"
VERSION = 1
FLAG_CRC = 0x01
MAX_SIDE = 1 << 20
MAX_NAME_BYTES = 64
MAX_PARAMS_BYTES = 1 << 16
NAMED_CODEC_ID = 0

# Append-only: a file written today must decode the same way forever. Never renumber
# or reuse an id; add new codecs at the end. tests/test_container.py pins these ids.
# Codecs not listed here are written by name (id 0), which costs only their name length.
CODEC_IDS: dict[str, int] = {
    "bpg": 1,
    "vtm": 2,
    "bmshj2018-factorized": 3,
    "bmshj2018-hyperprior": 4,
    "mbt2018-mean": 5,
    "mbt2018": 6,
    "cheng2020-anchor": 7,
    "cheng2020-attn": 8,
    "perco": 9,
    "latent-diffusion": 10,
}
CODEC_NAMES: dict[int, str] = {number: name for name, number in CODEC_IDS.items()}


def _crc8_table() -> tuple[int, ...]:
    # CRC-8/ATM (polynomial 0x07): detects every error burst of up to 8 bits, so any
    # single corrupted header byte.
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = ((value << 1) ^ 0x07) & 0xFF if value & 0x80 else (value << 1) & 0xFF
        table.append(value)
    return tuple(table)


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    value = 0
    for byte in data:
        value = _CRC8[value ^ byte]
    return value


@dataclass(frozen=True)
class Container:
    codec: str
    width: int
    height: int
    params: bytes
    payload: bytes
    crc: bool
    file_size: int

    @property
    def payload_bpp(self) -> float:
        """Bits per pixel of the codec's payload alone: what papers report."""
        return 8 * len(self.payload) / (self.width * self.height)

    @property
    def file_bpp(self) -> float:
        """Bits per pixel of the whole file, container overhead included."""
        return 8 * self.file_size / (self.width * self.height)


def _check_name(name: str) -> bytes:
    encoded = name.encode("utf-8")
    if not name or len(encoded) > MAX_NAME_BYTES or not name.isprintable():
        raise ValueError(f"codec name must be 1..{MAX_NAME_BYTES} bytes of printable UTF-8, got {name!r}")
    return encoded


def _check_side(value: int, what: str) -> None:
    if not 1 <= value <= MAX_SIDE:
        raise ValueError(f"{what} must lie in 1..{MAX_SIDE}, got {value}")


def checked_codec_id(codec: str, declared: int | None) -> int | None:
    """The id `codec` is written under: its row in CODEC_IDS, which a declared id must match.

    A plugin declares its `container_id`; an id the table does not give to that name
    would decode as another codec (or not at all) in every other installation, so it
    is refused. None (no declaration) means the table's id, or the name itself.
    """
    if declared is None:
        return CODEC_IDS.get(codec)
    if isinstance(declared, bool) or not isinstance(declared, int) or declared < 1:
        raise ContainerError(f"codec {codec!r} declares container id {declared!r}; ids are whole numbers from 1")
    if CODEC_IDS.get(codec) == declared:
        return declared
    owner = CODEC_NAMES.get(declared)
    if owner is not None:
        raise ContainerError(f"codec {codec!r} declares container id {declared}, which belongs to {owner!r}")
    raise ContainerError(
        f"codec {codec!r} declares container id {declared}, which enhance.container.CODEC_IDS does not assign to it; "
        "add the row there (append-only) or declare no id to be written by name"
    )


def pack(
    codec: str, width: int, height: int, payload: bytes, params: bytes = b"", crc: bool = True, *, codec_id: int | None = None
) -> bytes:
    """A container holding `payload` from `codec` for a `width` x `height` image (`codec_id`: see `checked_codec_id`)."""
    _check_side(width, "width")
    _check_side(height, "height")
    if len(params) > MAX_PARAMS_BYTES:
        raise ValueError(f"codec params must be at most {MAX_PARAMS_BYTES} bytes, got {len(params)}")
    header = bytearray(MAGIC)
    header.append(VERSION)
    codec_id = checked_codec_id(codec, codec_id)
    if codec_id is not None:
        header += encode_varint(codec_id)
    else:
        name = _check_name(codec)
        header += encode_varint(NAMED_CODEC_ID) + encode_varint(len(name)) + name
    header += encode_varint(width) + encode_varint(height)
    header.append(FLAG_CRC if crc else 0)
    header += encode_varint(len(params)) + params
    header.append(crc8(header))
    body = bytes(header) + bytes(payload)
    if crc:
        body += zlib.crc32(body).to_bytes(4, "big")
    return body


def is_container(data: bytes) -> bool:
    return data[: len(MAGIC)] == MAGIC


def unpack(data: bytes) -> Container:
    """Parses a container; any malformed input raises ContainerError saying why."""
    data = bytes(data)
    reader = ByteReader(data, "container", error=ContainerError)
    if reader.take(len(MAGIC), "magic") != MAGIC:
        raise ContainerError("not an enhance container (bad magic)")
    (version,) = reader.take(1, "version")
    if version != VERSION:
        raise ContainerError(
            f"container version {version} is not supported (this enhance reads version {VERSION}); upgrade enhance"
        )
    codec_id = reader.varint("codec id", 0, 0xFFFFFFFF)
    if codec_id == NAMED_CODEC_ID:
        length = reader.varint("codec name length", 0, MAX_NAME_BYTES)
        raw_name = reader.take(length, "codec name")
        try:
            codec = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            raise ContainerError("codec name is not valid UTF-8") from None
        if not codec or not codec.isprintable():
            raise ContainerError(f"codec name {codec!r} is empty or not printable")
    elif codec_id in CODEC_NAMES:
        codec = CODEC_NAMES[codec_id]
    else:
        raise ContainerError(f"unknown codec id {codec_id}; written by a newer enhance?")
    width = reader.varint("width", 0, MAX_SIDE)
    height = reader.varint("height", 0, MAX_SIDE)
    if width == 0 or height == 0:
        raise ContainerError(f"image size {width}x{height} is empty")
    (flags,) = reader.take(1, "flags")
    if flags & ~FLAG_CRC:
        raise ContainerError(f"unknown flags 0x{flags:02x}")
    params_length = reader.varint("params length", 0, MAX_PARAMS_BYTES)
    params = reader.take(params_length, "params")
    header_end = reader.position
    (header_check,) = reader.take(1, "header check")
    if crc8(data[:header_end]) != header_check:
        raise ContainerError("header check failed: the file is corrupt")
    has_crc = bool(flags & FLAG_CRC)
    payload_end = len(data)
    if has_crc:
        payload_end -= 4
        if payload_end < reader.position:
            raise ContainerError("truncated: missing CRC32")
        stored = int.from_bytes(data[payload_end:], "big")
        if zlib.crc32(data[:payload_end]) != stored:
            raise ContainerError("CRC32 mismatch: the file is truncated or corrupt")
    return Container(
        codec=codec,
        width=width,
        height=height,
        params=params,
        payload=data[reader.position : payload_end],
        crc=has_crc,
        file_size=len(data),
    )


def encode_params(values: dict[str, str]) -> bytes:
    """Key/value params: entries sorted by key, each varint length + UTF-8 key, varint length + UTF-8 value."""
    out = bytearray()
    for key in sorted(values):
        value = values[key]
        if not key or not key.isprintable():
            raise ValueError(f"param key must be non-empty printable text, got {key!r}")
        for text in (key, value):
            encoded = text.encode("utf-8")
            out += encode_varint(len(encoded)) + encoded
    return bytes(out)


def decode_params(params: bytes) -> dict[str, str]:
    """Inverse of `encode_params`; keys must be unique and sorted so each dict has one encoding."""
    reader = ByteReader(params, "container params", error=ContainerError)
    values: dict[str, str] = {}
    previous = None
    while reader.position < len(params):
        entry = []
        for field in ("param key", "param value"):
            length = reader.varint(f"{field} length", 0, MAX_PARAMS_BYTES)
            try:
                entry.append(reader.take(length, field).decode("utf-8"))
            except UnicodeDecodeError:
                raise ContainerError(f"{field} is not valid UTF-8") from None
        key, value = entry
        if not key or not key.isprintable() or (previous is not None and key <= previous):
            raise ContainerError(f"param key {key!r} is empty, unprintable, repeated or out of order")
        values[key] = value
        previous = key
    return values
