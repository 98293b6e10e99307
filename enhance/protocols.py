"""Public protocols for enhancers and full generative codecs, the two plugin kinds besides base codecs.

Base codecs follow `enhance.codecs.base`. Plugins register a factory (usually the class)
under an entry-point group of `enhance.registry`; the factory takes keyword arguments only.
Images are uint8 HxWx3 numpy arrays.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Enhancer(Protocol):
    """Restores detail a base codec removed from a decoded image."""

    name: str

    def enhance(self, decoded: np.ndarray, *, rate: float | None, steps: int | None, seed: int) -> np.ndarray:
        """`rate` is what the base codec tells the receiver (a JPEG quality estimated from the
        file's tables, a neural codec's lambda) or None; `steps=None` means the model's default."""
        ...


@runtime_checkable
class FullCodec(Protocol):
    """A generative codec that both encodes and decodes (PerCo-like); its bytes go in the container."""

    name: str
    # (lowest, highest) rate accepted by `encode`, in the codec's own unit (`rate_unit`).
    rate_range: tuple[float, float]
    rate_unit: str

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, what to install or download)."""
        ...

    def encode(self, image: np.ndarray, rate: float) -> bytes: ...

    def decode(self, data: bytes, *, steps: int | None = None, seed: int = 0) -> np.ndarray:
        """`steps=None` means the codec's default; the same `seed` gives the same image."""
        ...
