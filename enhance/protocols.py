"""Public protocols for enhancers and full generative codecs, the two plugin kinds besides base codecs.

Base codecs follow `enhance.codecs.base`. Plugins register a factory (usually the class)
under an entry-point group of `enhance.registry`; the factory takes keyword arguments only.
Images are uint8 HxWx3 numpy arrays. "Rate" is the one word every protocol uses for the
knob a codec is coded at, in the codec's own unit (`rate_unit`): a JPEG quality, a QP, a
λ, a target bpp.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Enhancer(Protocol):
    """Restores detail a base codec removed from a decoded image.

    The factory is called as `factory(codec=..., bundle=..., device=..., tile=...)`, with
    `codec` always and the others only when the user set them (`bundle` is a model
    directory). What callers need is on the instance:

    - `identity`: a short string that changes with anything that changes the output
      (weights, device, dtype); result caches key on it (with `tile`, when it has one).
    - `default_steps` and `step_range` (lowest, highest): what `steps` may be.
    - `enhance_stops`: several step counts from one sampling trajectory, so comparing
      1, 4 and 20 steps costs 20 steps.
    """

    name: str
    identity: str
    default_steps: int
    step_range: tuple[int, int]

    def enhance(self, decoded: np.ndarray, *, rate: float | None, steps: int | None, seed: int) -> np.ndarray:
        """`rate` is what the base codec tells the receiver (a JPEG quality estimated from the
        file's tables, a neural codec's lambda) or None; `steps=None` means the model's default."""
        ...

    def enhance_stops(self, decoded: np.ndarray, *, rate: float | None, stops: list[int], seed: int) -> dict[int, np.ndarray]:
        """{steps: output} after each of `stops` steps of one trajectory; the same seed gives the same images."""
        ...


@runtime_checkable
class FullCodec(Protocol):
    """A generative codec that both encodes and decodes (PerCo-like); its bytes go in the container.

    - `container_id`: the codec's id in `enhance.container.CODEC_IDS` (append-only); the
      container refuses an id the table does not give to `name`. A codec without one is
      written by name (a few bytes more).
    - `weights_lock` (optional): the path of the plugin's own weights.lock; its rows show
      in `enhance weights list|fetch|verify` (an `enhance.weights` entry point does the same).
    - `identity` (optional): a short string that changes with anything that changes the
      output (weights, device type); `enhance compare`'s cache keys on it. Without one, a
      cached result outlives a change of weights.
    - `decode` may take a keyword `params: dict[str, str]`: the container's parameters
      written at encode time (`"rate"`, the rate `encode` was given). A `decode` without
      that keyword is called without it, so codecs written against the first version of
      this protocol keep working.
    """

    name: str
    # (lowest, highest) rate accepted by `encode`, in the codec's own unit (`rate_unit`).
    rate_range: tuple[float, float]
    rate_unit: str
    container_id: int

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, what to install or download)."""
        ...

    def encode(self, image: np.ndarray, rate: float) -> bytes: ...

    def decode(self, data: bytes, *, steps: int | None = None, seed: int = 0) -> np.ndarray:
        """`steps=None` means the codec's default; the same `seed` gives the same image."""
        ...
