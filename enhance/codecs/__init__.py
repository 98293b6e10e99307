"""Base codecs: one small class per codec behind the `Codec` protocol (see `base`).

`BUILTIN_CODECS` maps each built-in codec's name to its class; `get_codec` builds one.
Plugins add codecs through entry points (`enhance.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EnhanceError
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


def get_codec(name: str, **options) -> Codec:
    """A built-in codec by name, constructed with keyword `options`."""
    try:
        codec_class = BUILTIN_CODECS[name]
    except KeyError:
        raise EnhanceError(f"unknown codec {name!r}; known codecs: {', '.join(BUILTIN_CODECS)}") from None
    return codec_class(**options)


@dataclass(frozen=True)
class CodecDescription:
    name: str
    family: str
    quality_range: tuple[float, float]
    quality_unit: str
    higher_quality_is_better: bool
    available: bool
    reason: str
    # What `-q` means, in the terms of the format's own tools ("" when the codec does not say).
    quality_meaning: str = ""


def describe_codecs(codecs: dict[str, type] | None = None) -> list[CodecDescription]:
    """Each codec's name, family, quality knob and whether it is usable here (default: the built-ins)."""
    descriptions = []
    for name, codec_class in (codecs if codecs is not None else BUILTIN_CODECS).items():
        codec = codec_class()
        usable, reason = codec.available()
        descriptions.append(
            CodecDescription(
                name=name,
                family=getattr(codec, "family", "plugin"),
                quality_range=tuple(codec.quality_range),
                quality_unit=getattr(codec, "quality_unit", "quality"),
                higher_quality_is_better=codec.higher_quality_is_better,
                available=usable,
                reason=reason,
                quality_meaning=getattr(codec, "quality_meaning", ""),
            )
        )
    return descriptions


__all__ = ["BUILTIN_CODECS", "Codec", "CodecDescription", "describe_codecs", "get_codec"]
