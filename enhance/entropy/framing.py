"""One framing for every codec's entropy-coded strings: a count, then each string as a varint-length blob."""

from __future__ import annotations

from ..framing import ByteReader, ByteWriter

MAX_STRINGS = 16


def pack_strings(strings: list[bytes], writer: ByteWriter | None = None) -> bytes:
    writer = writer or ByteWriter()
    writer.varint(len(strings))
    for string in strings:
        writer.blob(string)
    return writer.getvalue()


def unpack_strings(reader: ByteReader, count: int) -> list[bytes]:
    """Exactly `count` strings; the reader raises BadInput on truncation or a wrong count."""
    reader.varint("string count", count, count)
    return [reader.blob(f"string {index}") for index in range(count)]
