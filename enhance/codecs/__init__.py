"""Base codecs: one small class per codec behind the `Codec` protocol (see `base`).

`BUILTIN_CODECS` maps each built-in codec's name to its class. Codecs are built by name
through `enhance.registry` (`registry.get_codec`), which also finds plugins.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from .base import Codec
from .external import BpgCodec, VtmCodec
from .heic import HeicCodec
from .jxl import JxlCodec
from .neural import NEURAL_CODECS
from .pillow import AvifCodec, Jpeg2000Codec, JpegCodec, WebpCodec

BUILTIN_CODECS: dict[str, type] = {
    codec.name: codec
    for codec in (
        JpegCodec,
        WebpCodec,
        AvifCodec,
        Jpeg2000Codec,
        JxlCodec,
        HeicCodec,
        BpgCodec,
        VtmCodec,
        *NEURAL_CODECS,
    )
}


@dataclass(frozen=True)
class CodecDescription:
    name: str
    family: str
    rate_range: tuple[float, float] | None  # None when only a built codec knows it (a property)
    rate_unit: str
    higher_rate_is_better: bool
    available: bool
    reason: str
    # What `-q` means, in the terms of the format's own tools ("" when the codec does not say).
    rate_meaning: str = ""


def describe_codecs(codecs: dict[str, type] | None = None, *, family: str | None = None) -> list[CodecDescription]:
    """Each codec's name, family, rate knob and whether it is usable here (default: the built-ins).

    `family` overrides the codecs' own (`"full"` for full generative codecs, which are
    described from their class, without being built: building one may load weights).
    """
    descriptions = []
    for name, codec_class in (codecs if codecs is not None else BUILTIN_CODECS).items():
        codec = codec_class if family == "full" else codec_class()
        try:
            usable, reason = codec.available()
        # A plugin's availability check runs third-party code; what it raises is its answer.
        except Exception as error:  # noqa: BLE001
            usable, reason = False, f"{type(error).__name__}: {error}"
        descriptions.append(
            CodecDescription(
                name=name,
                family=family or getattr(codec, "family", "plugin"),
                rate_range=tuple(codec.rate_range) if isinstance(codec.rate_range, (tuple, list)) else None,
                rate_unit=getattr(codec, "rate_unit", "quality"),
                higher_rate_is_better=getattr(codec, "higher_rate_is_better", True),
                available=usable,
                reason=reason,
                rate_meaning=getattr(codec, "rate_meaning", ""),
            )
        )
    return descriptions


def _accepts(method, keyword: str) -> bool:
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def reads_params(codec) -> bool:
    """Whether `codec.decode` takes the container's parameters (`params`)."""
    return _accepts(codec.decode, "params")


def decode_payload(codec, data: bytes, *, full: bool, steps: int | None = None, seed: int = 0, params: dict | None = None):
    """`codec.decode(data)`, as its kind takes it: a full codec gets `steps` and `seed`, and any
    codec whose `decode` takes `params` gets the container's parameters (when there are any)."""
    extra = {"params": params} if params is not None and reads_params(codec) else {}
    if full:
        return codec.decode(data, steps=steps, seed=seed, **extra)
    return codec.decode(data, **extra)


__all__ = ["BUILTIN_CODECS", "Codec", "CodecDescription", "decode_payload", "describe_codecs", "reads_params"]
