"""What the per-image pass produces: one `Output` per image, quality and configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from .meter import Measurement


@dataclass
class Output:
    """One image at one quality through one configuration."""

    image: str
    configuration: str
    quality: int | float
    steps: int | None
    bytes: int
    bpp: float
    cache_kind: str
    cache_key: str
    encode: Measurement
    decode: Measurement
    enhance: Measurement | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    metric_reasons: dict[str, str] = field(default_factory=dict)
    metrics_measurement: Measurement = field(default_factory=Measurement)

    @property
    def seconds(self) -> float:
        """Time from the original to this output: encode, decode and (if any) enhance."""
        return self.encode.seconds + self.decode.seconds + (self.enhance.seconds if self.enhance else 0.0)
