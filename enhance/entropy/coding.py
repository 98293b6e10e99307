"""Symbols to bytes and back with constriction's range coder.

Symbols outside a model's range are clipped by the encoder (the caller reconstructs from the
clipped symbols, so encoder and decoder agree). Any byte string decodes to in-range symbols or
raises BadInput: the decoder never reads out of bounds.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput
from .gaussian import SCALE_TABLE

GAUSSIAN_MAX_SYMBOL = 255


def _words(data: bytes, what: str) -> np.ndarray:
    if len(data) % 4:
        raise BadInput(f"{what}: an entropy-coded string must be whole 32-bit words ({len(data)} bytes)")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _encoder():
    import constriction

    return constriction.stream.queue.RangeEncoder()


def _decoder(data: bytes, what: str):
    import constriction

    return constriction.stream.queue.RangeDecoder(_words(data, what))


def _decode(decoder, what: str, *args) -> np.ndarray:
    try:
        return np.asarray(decoder.decode(*args), dtype=np.int64)
    # constriction raises ValueError/AssertionError-like exceptions on exhausted or invalid input.
    except Exception as error:  # noqa: BLE001
        raise BadInput(f"{what}: corrupt entropy-coded string ({error})") from None


def clip_gaussian(symbols: np.ndarray) -> np.ndarray:
    return np.clip(symbols, -GAUSSIAN_MAX_SYMBOL, GAUSSIAN_MAX_SYMBOL)


def encode_gaussian(symbols: np.ndarray, indices: np.ndarray) -> bytes:
    """Integer symbols (centred on their means) under N(0, SCALE_TABLE[index])."""
    import constriction

    if symbols.size == 0:
        return b""
    family = constriction.stream.model.QuantizedGaussian(-GAUSSIAN_MAX_SYMBOL, GAUSSIAN_MAX_SYMBOL)
    stds = SCALE_TABLE.numpy()[indices.reshape(-1)]
    encoder = _encoder()
    encoder.encode(clip_gaussian(symbols.reshape(-1)).astype(np.int32), family, np.zeros_like(stds), stds)
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_gaussian(data: bytes, indices: np.ndarray, what: str = "stream") -> np.ndarray:
    import constriction

    if indices.size == 0:
        return np.zeros(0, dtype=np.int64)
    family = constriction.stream.model.QuantizedGaussian(-GAUSSIAN_MAX_SYMBOL, GAUSSIAN_MAX_SYMBOL)
    stds = SCALE_TABLE.numpy()[indices.reshape(-1)]
    return _decode(_decoder(data, what), what, family, np.zeros_like(stds), stds)


def encode_categorical(symbols: np.ndarray, tables: np.ndarray, rows: np.ndarray) -> bytes:
    """Symbols 0..n-1, symbol i coded with the probabilities `tables[rows[i]]`."""
    import constriction

    if symbols.size == 0:
        return b""
    symbols = np.clip(symbols.reshape(-1), 0, tables.shape[1] - 1).astype(np.int32)
    encoder = _encoder()
    model = constriction.stream.model.Categorical(perfect=False)
    encoder.encode(symbols, model, tables[rows.reshape(-1)].astype(np.float64))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode_categorical(data: bytes, tables: np.ndarray, rows: np.ndarray, what: str = "stream") -> np.ndarray:
    import constriction

    if rows.size == 0:
        return np.zeros(0, dtype=np.int64)
    model = constriction.stream.model.Categorical(perfect=False)
    return _decode(_decoder(data, what), what, model, tables[rows.reshape(-1)].astype(np.float64))
