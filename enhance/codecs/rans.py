"""A bounds-checked rANS decoder, bit-exact with CompressAI's `compressai.ans.RansDecoder`.

CompressAI's C++ decoder reads the stream through a raw pointer and never checks it
against the stream's length: a string shorter than its symbols need (a truncated or
crafted payload, InterDigitalInc/CompressAI#300) makes it read past the buffer, which
ends in SIGSEGV. No check on the string's length alone can rule that out (a symbol of
probability near 1 costs almost no bits, and the escape ("bypass") code reads a count
from the stream), so the neural codecs decode with this class instead: the same
algorithm (ryg_rans' 64-bit rANS with 32-bit renormalisation, 16-bit CDFs, 4-bit
bypass coding of out-of-range values), with every read checked.

It also checks what a stream CompressAI's encoder wrote always satisfies: its length is
a whole number of 32-bit words (at least the 2 of the final state), no escape uses more
than 8 nibbles (a 32-bit value), and decoding ends with every word consumed and the
state back at its initial value. A stream that fails any of these is corrupt, and
raises `RansError` instead of decoding into a wrong picture.
"""

from __future__ import annotations

from bisect import bisect_right

PRECISION = 16
MASK = (1 << PRECISION) - 1
BYPASS_PRECISION = 4
MAX_BYPASS_VALUE = (1 << BYPASS_PRECISION) - 1
# A 32-bit raw value needs at most 8 nibbles; CompressAI's encoder never writes more.
MAX_BYPASS_NIBBLES = 32 // BYPASS_PRECISION
RANS_L = 1 << 31
UINT64 = (1 << 64) - 1


class RansError(ValueError):
    """An entropy-coded string that cannot be what CompressAI's encoder wrote."""


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class CheckedRansDecoder:
    """Drop-in for `compressai.ans.RansDecoder`: `decode_with_indexes`, or `set_stream` + `decode_stream`."""

    def __init__(self) -> None:
        self._words: list[int] = []
        self._position = 0
        self._state = 0

    # --- the stream -----------------------------------------------------------------

    def set_stream(self, encoded: bytes) -> None:
        encoded = bytes(encoded)
        if len(encoded) < 8 or len(encoded) % 4:
            raise RansError(f"an entropy-coded string of {len(encoded)} bytes is not a whole number (>= 2) of 32-bit words")
        count = len(encoded) // 4
        self._words = list(memoryview(encoded).cast("I")) if _LITTLE_ENDIAN else [
            int.from_bytes(encoded[4 * i : 4 * i + 4], "little") for i in range(count)
        ]
        self._state = self._words[0] | (self._words[1] << 32)
        self._position = 2

    def finish(self) -> None:
        """Raises RansError unless every word was read and the state is back where the encoder started."""
        if self._position != len(self._words) or self._state != RANS_L:
            raise RansError(
                f"the entropy-coded string does not end where its symbols do ({len(self._words) - self._position} "
                "words left over, or a wrong final state): it is corrupt"
            )

    def _truncated(self) -> RansError:
        return RansError(f"the entropy-coded string ends early: its {len(self._words)} words do not hold its symbols")

    # --- decoding -------------------------------------------------------------------

    def decode_stream(self, indexes, cdfs, cdfs_sizes, offsets) -> list[int]:
        words = self._words
        count = len(words)
        position = self._position
        x = self._state
        output = []
        append = output.append
        for cdf_index in indexes:
            cdf = cdfs[cdf_index]
            size = cdfs_sizes[cdf_index]
            max_value = size - 2
            cum = x & MASK
            symbol = bisect_right(cdf, cum, 0, size) - 1
            start = cdf[symbol]
            x = ((cdf[symbol + 1] - start) * (x >> PRECISION) + cum - start) & UINT64
            if x < RANS_L:
                if position >= count:
                    raise self._truncated()
                x = ((x << 32) | words[position]) & UINT64
                position += 1
            value = symbol
            if value == max_value:
                # Escape: a nibble count (CompressAI's encoder never needs the count's own
                # escape, 15, as no 32-bit value needs more than 8 nibbles), then the nibbles.
                n_bypass = 0
                raw = 0
                for j in range(-1, MAX_BYPASS_NIBBLES):
                    if j >= n_bypass:
                        break
                    val = x & MAX_BYPASS_VALUE
                    x >>= BYPASS_PRECISION
                    if x < RANS_L:
                        if position >= count:
                            raise self._truncated()
                        x = (x << 32) | words[position]
                        position += 1
                    if j < 0:
                        if val > MAX_BYPASS_NIBBLES:
                            raise RansError(
                                f"an escaped value claims {val} nibbles, more than {MAX_BYPASS_NIBBLES}: the string is corrupt"
                            )
                        n_bypass = val
                    else:
                        raw |= val << (j * BYPASS_PRECISION)
                raw = _int32(raw)
                value = raw >> 1
                value = -value - 1 if raw & 1 else value + max_value
            append(_int32(value + offsets[cdf_index]))
        self._position = position
        self._state = x
        return output

    def decode_with_indexes(self, encoded: bytes, indexes, cdfs, cdfs_sizes, offsets) -> list[int]:
        self.set_stream(encoded)
        output = self.decode_stream(indexes, cdfs, cdfs_sizes, offsets)
        self.finish()
        return output


_LITTLE_ENDIAN = memoryview(b"\x01\x00\x00\x00").cast("I")[0] == 1
