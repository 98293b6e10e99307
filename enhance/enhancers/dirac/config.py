"""The DIRAC bundle config: everything a model needs besides its weights.

A bundle is a directory holding `config.json` (this) and `model.safetensors`. The
config is read strictly: unknown keys or a newer format version are errors, so a
bundle never loads into a model it was not trained as.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from .model import DiracUNetConfig
from .scheduler import ScheduleConfig

FORMAT = "enhance.dirac"
FORMAT_VERSION = 1


class BundleError(WeightsError, ValueError):
    """A DIRAC bundle that cannot be used, with the path and the reason."""


@dataclass(frozen=True)
class RateSpec:
    """What the receiver knows about the base codec's rate, and how to normalise it."""

    name: str = "jpeg_quality"
    low: float = 1.0
    high: float = 100.0

    def normalise(self, rate: float) -> float:
        return float(np.clip((rate - self.low) / (self.high - self.low), 0.0, 1.0))


@dataclass(frozen=True)
class Thresholds:
    """Per-rate, per-channel clipping range for residual predictions (scaled units).

    Measured on training residuals as low and high percentiles; interpolated linearly
    in the rate between the measured points and held constant beyond them.
    """

    percentile: float
    rates: tuple[float, ...]
    lower: tuple[tuple[float, ...], ...]
    upper: tuple[tuple[float, ...], ...]

    def at(self, rate: float) -> tuple[np.ndarray, np.ndarray]:
        rates = np.asarray(self.rates)
        lower = np.array([np.interp(rate, rates, np.asarray(self.lower)[:, c]) for c in range(len(self.lower[0]))])
        upper = np.array([np.interp(rate, rates, np.asarray(self.upper)[:, c]) for c in range(len(self.upper[0]))])
        return lower, upper

    def to_dict(self) -> dict:
        return {
            "percentile": self.percentile,
            "rates": list(self.rates),
            "lower": [list(r) for r in self.lower],
            "upper": [list(r) for r in self.upper],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Thresholds":
        expected = {"percentile", "rates", "lower", "upper"}
        if set(data) != expected:
            raise ValueError(f"thresholds need exactly the keys {sorted(expected)}")
        rates = tuple(float(r) for r in data["rates"])
        lower = tuple(tuple(float(v) for v in row) for row in data["lower"])
        upper = tuple(tuple(float(v) for v in row) for row in data["upper"])
        if not rates or len(lower) != len(rates) or len(upper) != len(rates):
            raise ValueError("thresholds need one lower and one upper row per rate")
        if list(rates) != sorted(rates):
            raise ValueError("threshold rates must be increasing")
        if any(lo > hi for lrow, hrow in zip(lower, upper) for lo, hi in zip(lrow, hrow)):
            raise ValueError("a lower threshold exceeds its upper threshold")
        return cls(percentile=float(data["percentile"]), rates=rates, lower=lower, upper=upper)


@dataclass(frozen=True)
class DiracConfig:
    codec: str = "jpeg"
    rate: RateSpec | None = field(default_factory=RateSpec)
    # Residuals are small next to the noise at t_start; scaling them (in [-1, 1] image
    # units) gives the diffusion a signal of useful size.
    residual_scale: float = 4.0
    model: DiracUNetConfig = field(default_factory=DiracUNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    thresholds: Thresholds | None = None
    default_steps: int = 1

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "codec": self.codec,
            "rate": None if self.rate is None else {"name": self.rate.name, "low": self.rate.low, "high": self.rate.high},
            "residual_scale": self.residual_scale,
            "model": self.model.to_dict(),
            "schedule": self.schedule.to_dict(),
            "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
            "default_steps": self.default_steps,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DiracConfig":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} config")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise ValueError(f"config version {version!r} is not supported (this enhance reads {FORMAT_VERSION})")
        expected = {"format", "version", "codec", "rate", "residual_scale", "model", "schedule", "thresholds", "default_steps"}
        unknown, missing = set(data) - expected, expected - set(data)
        if unknown or missing:
            raise ValueError(f"config keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
        rate = data["rate"]
        config = cls(
            codec=str(data["codec"]),
            rate=None if rate is None else RateSpec(name=str(rate["name"]), low=float(rate["low"]), high=float(rate["high"])),
            residual_scale=float(data["residual_scale"]),
            model=DiracUNetConfig.from_dict(data["model"]),
            schedule=ScheduleConfig.from_dict(data["schedule"]),
            thresholds=None if data["thresholds"] is None else Thresholds.from_dict(data["thresholds"]),
            default_steps=int(data["default_steps"]),
        )
        if config.model.rate_conditioned != (config.rate is not None):
            raise ValueError("a rate-conditioned model needs a rate spec, and only it")
        if not 1 <= config.default_steps <= config.schedule.schedule_steps:
            raise ValueError("default_steps must lie in 1..schedule_steps")
        return config

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "DiracConfig":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{path}: {error}") from None
