"""The codec under test and the configurations (curves) a comparison draws from it.

A configuration is the base codec alone, the base codec followed by the enhancer at some
step count (`<codec>+<enhancer>-<steps>`), or a full generative codec decoded at some
step count (`<codec>-<steps>`). Configuration names are also file stems (`file_stem`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import registry
from ..codecs import decode_payload
from ..enhance_one import check_steps
from ..errors import CodecUnavailable, EnhanceError
from ..image import checked_rgb

# Files the comparison writes besides one JSON per configuration.
RESERVED_STEMS = {"per-image", "bd-rate", "summary", "report"}


def file_stem(name: str) -> str:
    """A name (configuration, metric, image label) as a safe file name stem."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unnamed"


@dataclass(frozen=True)
class Configuration:
    """One curve of the comparison: the base codec, the base codec + enhancer at n steps, or a full codec at n steps."""

    name: str
    kind: str  # "base", "enhanced" or "full"
    steps: int | None
    description: str


class Subject:
    """The codec under test: a base codec (`encode(image, quality)`, `decode(bytes)`) or a
    full generative codec (`encode(image, rate)`, `decode(bytes, *, steps, seed)`)."""

    def __init__(self, *, name: str, options: Mapping | None = None):
        options = dict(options or {})
        kind = registry.codec_kind(name)
        try:
            self.instance = registry.create(kind, name, **options)
        except TypeError as error:
            raise EnhanceError(f"codec {name}: bad option ({error})") from None
        usable, reason = self.instance.available()
        if not usable:
            raise CodecUnavailable(f"codec {name} is unavailable: {reason}")
        self.name = name
        self.full = kind == "full_codec"
        self.options = options
        self.rate_range = tuple(self.instance.rate_range)

    def check_qualities(self, qualities: list) -> None:
        low, high = self.rate_range
        outside = [quality for quality in qualities if not low <= quality <= high]
        if outside:
            raise EnhanceError(f"codec {self.name}: {', '.join(map(str, outside))} outside its range {low:g}..{high:g}")

    def key_fields(self) -> dict:
        fields = {"codec": self.name, "full": self.full, "options": self.options}
        # A full codec's outputs change with its weights, which its name and options do not say.
        identity = getattr(self.instance, "identity", None)
        if identity is not None:
            fields["identity"] = identity
        return fields

    def describe(self) -> str:
        options = ", ".join(f"{key}={value}" for key, value in sorted(self.options.items()))
        kind = "full generative codec" if self.full else "base codec"
        return f"{self.name} ({kind}{', ' + options if options else ''})"

    def encode(self, pixels: np.ndarray, quality) -> bytes:
        data = self.instance.encode(pixels, quality)
        if not isinstance(data, (bytes, bytearray)):
            raise EnhanceError(f"codec {self.name}: encode returned {type(data).__name__}, not bytes")
        return bytes(data)

    def decode(self, data: bytes, shape: tuple[int, ...], *, steps: int | None, seed: int) -> np.ndarray:
        pixels = decode_payload(self.instance, data, full=self.full, steps=steps, seed=seed)
        return checked_rgb(pixels, f"codec {self.name}: decoded image", error=EnhanceError, shape=tuple(shape))


def configurations_for(
    subject: Subject, enhancer, steps: list[int] | None, *, consistent: bool, enhancer_note: str | None, notes: list[str]
) -> list[Configuration]:
    if subject.full:
        counts = steps or [None]
        return [
            Configuration(
                name=subject.name if count is None else f"{subject.name}-{count}",
                kind="full",
                steps=count,
                description=f"{subject.describe()}, decoded with {'its default' if count is None else count} steps",
            )
            for count in counts
        ]
    configurations = [Configuration(name=subject.name, kind="base", steps=None, description=subject.describe())]
    if enhancer is None:
        notes.append(f"{enhancer_note}; only the base codec is compared" + (" and --steps is ignored" if steps else ""))
        return configurations
    projection = ", JPEG outputs projected onto their quantization constraint set" if consistent else ""
    for count in steps or [enhancer.default_steps]:
        check_steps(enhancer, count)
        configurations.append(
            Configuration(
                name=f"{subject.name}+{enhancer.name}-{count}",
                kind="enhanced",
                steps=count,
                description=f"{subject.describe()}, then {enhancer.name.upper()} {count} step{'s' if count > 1 else ''} (model {enhancer.identity}){projection}",
            )
        )
    return configurations


def check_names(codec: str, configurations: list[Configuration], anchor: str | None) -> str:
    """The anchor configuration (default: the first); names must make distinct, unreserved file stems."""
    names = [configuration.name for configuration in configurations]
    stems = [file_stem(name) for name in names]
    if len(set(stems)) < len(stems) or set(stems) & RESERVED_STEMS:
        raise EnhanceError(f"codec {codec!r}: its configuration names {', '.join(names)} clash with each other or the report's files")
    anchor = anchor or names[0]
    if anchor not in names:
        raise EnhanceError(f"--anchor {anchor!r} is not one of the configurations: {', '.join(names)}")
    return anchor
