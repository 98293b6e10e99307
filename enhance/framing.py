"""Bytes helpers for the small binary formats enhance writes (the container, VTM and neural streams).

Integers are unsigned LEB128 varints of minimal length; a blob is a varint length and
its bytes. Readers check every length against what is left and against a limit, so a
corrupt or hostile payload raises BadInput instead of allocating or reading past the end.
"""

from __future__ import annotations

from .errors import BadInput

MAX_VARINT_BYTES = 10


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class ByteWriter:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def u8(self, value: int) -> None:
        self._buffer.append(value)

    def varint(self, value: int) -> None:
        self._buffer += encode_varint(value)

    def blob(self, data: bytes) -> None:
        self.varint(len(data))
        self._buffer += data

    def getvalue(self) -> bytes:
        return bytes(self._buffer)


class ByteReader:
    """Reads a payload front to back; `what` names the payload in error messages.

    Failures raise `error` (BadInput, or a subclass such as ContainerError). The one
    varint reader of the package: the container reads its header with it too.
    """

    def __init__(self, data: bytes, what: str, *, error: type[BadInput] = BadInput) -> None:
        self._data = data
        self._position = 0
        self._what = what
        self._error = error

    @property
    def position(self) -> int:
        return self._position

    def _fail(self, reason: str) -> BadInput:
        return self._error(f"{self._what}: {reason} (at byte {self._position} of {len(self._data)})")

    def take(self, count: int, field: str) -> bytes:
        """The next `count` bytes, or a failure saying `field` is truncated."""
        if count > len(self._data) - self._position:
            raise self._fail(f"truncated inside {field} ({count} bytes needed)")
        start = self._position
        self._position += count
        return self._data[start : self._position]

    def u8(self, field: str) -> int:
        if self._position >= len(self._data):
            raise self._fail(f"truncated before {field}")
        value = self._data[self._position]
        self._position += 1
        return value

    def varint(self, field: str, low: int, high: int) -> int:
        value = 0
        for index in range(MAX_VARINT_BYTES):
            byte = self.u8(field)
            if byte == 0 and index > 0:
                raise self._fail(f"{field} is not minimally encoded")
            value |= (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                break
        else:
            raise self._fail(f"{field} is too long")
        if not low <= value <= high:
            raise self._fail(f"{field} {value} is outside {low}..{high}")
        return value

    def blob(self, field: str) -> bytes:
        length = self.varint(f"length of {field}", 0, len(self._data) - self._position)
        # The varint itself moved the position; `take` rechecks what is really left.
        return self.take(length, field)

    def rest(self) -> bytes:
        """Everything not read yet (a payload's trailing stream)."""
        start, self._position = self._position, len(self._data)
        return self._data[start:]

    def end(self) -> None:
        if self._position != len(self._data):
            raise self._fail(f"{len(self._data) - self._position} unexpected trailing bytes")
