"""Rate-dependent clipping thresholds measured on training residuals."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ..enhancers.dirac.config import DiracConfig, Thresholds
from ..image import find_images
from .data import DEGRADATIONS, CropSampler

DEFAULT_RATES = {"jpeg": (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90)}


def measure_thresholds(
    sampler: CropSampler,
    rates: tuple[float, ...],
    residual_scale: float,
    percentile: float = 99.5,
    crops_per_rate: int = 256,
) -> Thresholds:
    """Per rate and channel, the low and high `percentile` of scaled residuals x - x_hat."""
    lower, upper = [], []
    for rate in rates:
        fixed = replace(sampler.degradation, quality_min=int(rate), quality_max=int(rate), low_quality_max=int(rate))
        sampler.degradation = fixed
        crops = sampler.batch(crops_per_rate)
        targets, decoded = crops.targets, crops.decoded
        residual = (targets.astype(np.float32) - decoded.astype(np.float32)) / 127.5 * residual_scale
        flat = residual.reshape(-1, 3)
        lower.append(tuple(float(v) for v in np.percentile(flat, 100 - percentile, axis=0)))
        upper.append(tuple(float(v) for v in np.percentile(flat, percentile, axis=0)))
    return Thresholds(percentile=percentile, rates=tuple(float(r) for r in rates), lower=tuple(lower), upper=tuple(upper))


def write_thresholds(
    bundle: Path,
    data: list[Path],
    *,
    percentile: float = 99.5,
    crops_per_rate: int = 256,
    crop: int = 128,
    seed: int = 0,
) -> Thresholds:
    """Measures thresholds for the bundle's codec on `data` and stores them in its config.json."""
    config_path = Path(bundle) / "config.json"
    config = DiracConfig.load(config_path)
    if config.codec not in DEGRADATIONS:
        raise ValueError(f"no degradation to measure thresholds for codec {config.codec!r}")
    sampler = CropSampler(find_images(data), crop, DEGRADATIONS[config.codec](), seed=seed)
    rates = DEFAULT_RATES[config.codec]
    thresholds = measure_thresholds(sampler, rates, config.residual_scale, percentile, crops_per_rate)
    replace(config, thresholds=thresholds).save(config_path)
    return thresholds
