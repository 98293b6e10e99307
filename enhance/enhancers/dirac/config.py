"""The DIRAC bundle config: everything a model needs besides its weights.

A bundle is a directory holding `config.json` (this) and `model.safetensors`, and, when
the config names a `first_step_model`, `first_step.safetensors`: a network of its own for
the trajectory's first step (the fidelity end), so that end can be trained for fidelity
alone without pulling the later (realism) steps back to the mean. The config is read
strictly: unknown keys or a newer format version are errors, so a bundle never loads
into a model it was not trained as.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from .model import DiracUNetConfig
from .scheduler import ScheduleConfig

FORMAT = "enhance.dirac"
FORMAT_VERSION = 3
# Keys later versions added, with the value an older bundle means: version 2 added
# model.refine_blocks (a version-1 refiner has none), version 3 first_step_model (before
# it, one network made every step).
ADDED_MODEL_KEYS = {"refine_blocks": (2, 0)}
ADDED_KEYS = {"first_step_model": (3, None)}


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


# --- strict checks of a config.json read from disk -----------------------------------
#
# Every key is required and every value must have its exact JSON type: 256.0 is not an
# embedding width, "2" is not a block count, "0.02" is not a beta, NaN is not a scale.
# Messages name the key by its path ("model.embed_dim", "rate.low").


def _whole(value, key: str, low: int | None = None) -> int:
    if type(value) is not int:
        raise ValueError(f"{key} must be a whole number, got {json.dumps(value)}")
    if low is not None and value < low:
        raise ValueError(f"{key} must be at least {low}, got {value}")
    return value


def _number(value, key: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {json.dumps(value) if not isinstance(value, float) else value}")
    return float(value)


def _table(value, key: str, expected: set[str]) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be an object, got {json.dumps(value)}")
    missing, unknown = sorted(expected - set(value)), sorted(set(value) - expected)
    if missing:
        raise ValueError(f"{key} is missing the key{'s' if len(missing) > 1 else ''} {', '.join(f'{key}.{m}' for m in missing)}")
    if unknown:
        raise ValueError(f"{key} has unknown keys {', '.join(f'{key}.{u}' for u in unknown)}")
    return value


def _list(value, key: str) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key} must be a non-empty list, got {json.dumps(value)}")
    return value


def _check_model(value, name: str) -> dict:
    model = _table(value, name, {f.name for f in fields(DiracUNetConfig)})
    for key in ("image_channels", "unshuffle", "mid_blocks", "embed_dim", "refine_channels", "refine_blocks"):
        _whole(model[key], f"{name}.{key}", 0 if key in ("mid_blocks", "refine_channels", "refine_blocks") else 1)
    for key in ("channels", "blocks"):
        for index, value in enumerate(_list(model[key], f"{name}.{key}")):
            _whole(value, f"{name}.{key}[{index}]", 1 if key == "channels" else 0)
    if type(model["rate_conditioned"]) is not bool:
        raise ValueError(f"{name}.rate_conditioned must be true or false, got {json.dumps(model['rate_conditioned'])}")
    return model


def check_bundle_dict(data: dict) -> None:
    """Raises ValueError naming the key of the first value in a bundle config that has the wrong type or range."""
    model = _check_model(data["model"], "model")
    if data["first_step_model"] is not None:
        first_step = _check_model(data["first_step_model"], "first_step_model")
        if first_step["image_channels"] != model["image_channels"]:
            raise ValueError("first_step_model must take the images model takes (the same image_channels)")

    schedule = _table(data["schedule"], "schedule", {f.name for f in fields(ScheduleConfig)})
    for key in ("num_train_timesteps", "t_start", "schedule_steps"):
        _whole(schedule[key], f"schedule.{key}", 1)
    beta_start, beta_end = _number(schedule["beta_start"], "schedule.beta_start"), _number(schedule["beta_end"], "schedule.beta_end")
    if not 0 < beta_start < beta_end < 1:
        raise ValueError(f"schedule needs 0 < beta_start < beta_end < 1, got {beta_start} and {beta_end}")

    if not isinstance(data["codec"], str) or not data["codec"]:
        raise ValueError(f"codec must be a codec name, got {json.dumps(data['codec'])}")
    if data["rate"] is not None:
        rate = _table(data["rate"], "rate", {"name", "low", "high"})
        if not isinstance(rate["name"], str) or not rate["name"]:
            raise ValueError(f"rate.name must be a non-empty string, got {json.dumps(rate['name'])}")
        low, high = _number(rate["low"], "rate.low"), _number(rate["high"], "rate.high")
        if not low < high:
            raise ValueError(f"rate.low must be less than rate.high, got {low:g} and {high:g}")
    scale = _number(data["residual_scale"], "residual_scale")
    if scale <= 0:
        raise ValueError(f"residual_scale must be positive, got {scale:g}")
    _whole(data["default_steps"], "default_steps", 1)

    if data["thresholds"] is not None:
        thresholds = _table(data["thresholds"], "thresholds", {"percentile", "rates", "lower", "upper"})
        percentile = _number(thresholds["percentile"], "thresholds.percentile")
        if not 50 <= percentile <= 100:
            raise ValueError(f"thresholds.percentile must lie in 50..100, got {percentile:g}")
        rates = [_number(r, f"thresholds.rates[{i}]") for i, r in enumerate(_list(thresholds["rates"], "thresholds.rates"))]
        channels = model["image_channels"]
        for side in ("lower", "upper"):
            rows = _list(thresholds[side], f"thresholds.{side}")
            if len(rows) != len(rates):
                raise ValueError(f"thresholds.{side} has {len(rows)} rows, thresholds.rates has {len(rates)} rates")
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != channels:
                    raise ValueError(
                        f"thresholds.{side}[{i}] must list {channels} values (one per image channel), got {json.dumps(row)}"
                    )
                for c, value in enumerate(row):
                    _number(value, f"thresholds.{side}[{i}][{c}]")


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
    # The first step's own network (weights in first_step.safetensors); None: `model` makes every step.
    first_step_model: DiracUNetConfig | None = None

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
            "first_step_model": None if self.first_step_model is None else self.first_step_model.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "DiracConfig":
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} config")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
            raise ValueError(f"config version {version!r} is not supported (this enhance reads {FORMAT_VERSION})")
        data = _as_current_version(data, version)
        check_bundle_dict(data)
        rate = data["rate"]
        config = cls(
            codec=str(data["codec"]),
            rate=None if rate is None else RateSpec(name=str(rate["name"]), low=float(rate["low"]), high=float(rate["high"])),
            residual_scale=float(data["residual_scale"]),
            model=DiracUNetConfig.from_dict(data["model"]),
            schedule=ScheduleConfig.from_dict(data["schedule"]),
            thresholds=None if data["thresholds"] is None else Thresholds.from_dict(data["thresholds"]),
            default_steps=int(data["default_steps"]),
            first_step_model=None if data["first_step_model"] is None else DiracUNetConfig.from_dict(data["first_step_model"]),
        )
        for network in filter(None, (config.model, config.first_step_model)):
            if network.rate_conditioned != (config.rate is not None):
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
            # Python's json reads NaN and Infinity, which JSON does not have; refuse them by name.
            data = json.loads(path.read_text(), parse_constant=_refuse_constant)
            return cls.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{path}: {error}") from None


def _as_current_version(data: dict, version: int) -> dict:
    """A config of `version` with this version's keys: those added since take the value an
    older bundle means; one its version did not have is refused, as any unknown key."""
    expected = {"format", "version", "codec", "rate", "residual_scale", "model", "schedule", "thresholds", "default_steps"}
    expected |= {key for key, (since, _) in ADDED_KEYS.items() if version >= since}
    unknown, missing = set(data) - expected, expected - set(data)
    if unknown or missing:
        raise ValueError(f"config keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
    data = {**data, **{key: value for key, (since, value) in ADDED_KEYS.items() if version < since}}
    if isinstance(data["model"], dict):
        for key, (since, value) in ADDED_MODEL_KEYS.items():
            if version < since and key in data["model"]:
                raise ValueError(f"model.{key} is not in config version {version} (it came with version {since})")
            if version < since:
                data["model"] = {**data["model"], key: value}
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows (a config value must be finite)")
