"""Which metrics a comparison computes, and computing them through the result cache."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .. import metrics as quality_metrics
from ..errors import BadInput, EnhanceError, WeightsError
from .cache import ResultCache, cache_key
from .meter import Measurement, measure
from .output import Output

# Bump when a metric implementation changes its numbers, so cached values are recomputed.
METRICS_REVISION = 1

# Metrics whose backbone weights come through weights.lock: (module in enhance.metrics, loader).
# The loaders are cached, so probing one also loads it for the metric itself.
WEIGHT_LOADERS = {
    "lpips": ("lpips_alex", "default_lpips"),
    "dists": ("dists_vgg", "default_dists"),
    "fid": ("patch_fid", "default_inception_features"),
    "kid": ("patch_fid", "default_inception_features"),
}


@dataclass
class MetricPlan:
    per_image: dict[str, Callable]
    per_set: dict[str, Callable]


def plan_metrics(requested: Sequence[str] | None, notes: list[str]) -> MetricPlan:
    """The metrics to compute. Unrequested metrics whose weights are missing are skipped with a note;
    requested ones raise the WeightsError."""
    per_image = {**quality_metrics.FULL_REFERENCE, **quality_metrics.LEARNED_FULL_REFERENCE}
    per_set = dict(quality_metrics.DISTRIBUTION)
    known = [*per_image, *per_set]
    explicit = requested is not None
    if explicit:
        unknown = [name for name in requested if name not in known]
        if unknown:
            raise EnhanceError(f"unknown metric {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        wanted = set(requested)
    else:
        wanted = set(known)
    unavailable: dict[str, list[str]] = {}
    for name in known:
        if name in wanted and name in WEIGHT_LOADERS:
            module, loader = WEIGHT_LOADERS[name]
            try:
                getattr(importlib.import_module(f"{quality_metrics.__name__}.{module}"), loader)()
            except WeightsError as error:
                if explicit:
                    raise
                unavailable.setdefault(str(error), []).append(name)
                wanted.discard(name)
    for reason, names in unavailable.items():
        notes.append(f"{', '.join(names)} skipped: backbone weights unavailable ({reason})")
    return MetricPlan(
        per_image={name: metric for name, metric in per_image.items() if name in wanted},
        per_set={name: metric for name, metric in per_set.items() if name in wanted},
    )


def _valid_value(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


def score_output(output: Output, reference: np.ndarray, pixels: np.ndarray, plan: MetricPlan, cache: ResultCache) -> None:
    """Fills `output.metrics` from the cache, computing only the metrics it lacks."""
    key = cache_key({"stage": "metrics", "output": output.cache_key, "revision": METRICS_REVISION})
    record = cache.read_record("metrics", key) or {}
    values = {k: v for k, v in _mapping(record.get("values")).items() if _valid_value(v)}
    reasons = {k: v for k, v in _mapping(record.get("reasons")).items() if isinstance(v, str)}
    spent = Measurement.from_dict(record.get("measurement"))
    missing = [name for name in plan.per_image if name not in values]
    cache.count("metrics", not missing)
    if missing:
        with measure() as measurement:
            for name in missing:
                try:
                    values[name] = float(plan.per_image[name](reference, pixels))
                except BadInput as error:
                    values[name], reasons[name] = None, str(error)
        peaks = [p for p in (spent.peak_rss_mib, measurement.peak_rss_mib) if p is not None]
        spent = Measurement(seconds=spent.seconds + measurement.seconds, peak_rss_mib=max(peaks) if peaks else None)
        cache.write_record("metrics", key, {"values": values, "reasons": reasons, "measurement": spent.to_dict()})
    output.metrics = {name: values[name] for name in plan.per_image}
    output.metric_reasons = {name: reasons[name] for name in plan.per_image if name in reasons}
    output.metrics_measurement = spent


@dataclass
class SetScore:
    value: float | None
    reason: str | None
    measurement: Measurement


def score_set(
    name: str, metric: Callable, originals: list[np.ndarray], outputs: list[Output], load: Callable[[Output], np.ndarray], contents: list[str], cache: ResultCache
) -> SetScore:
    """A distribution metric over one configuration at one quality (every image at once)."""
    key = cache_key(
        {"stage": "set", "metric": name, "revision": METRICS_REVISION, "pairs": [[c, o.cache_key] for c, o in zip(contents, outputs)]}
    )
    record = cache.read_record("sets", key)
    if record is not None and _valid_value(record.get("value")):
        cache.count("sets", True)
        reason = record.get("reason")
        return SetScore(record.get("value"), reason if isinstance(reason, str) else None, Measurement.from_dict(record.get("measurement")))
    cache.count("sets", False)
    pixels = [load(output) for output in outputs]
    reason = None
    with measure() as measurement:
        try:
            value = float(metric(originals, pixels))
        except BadInput as error:
            value, reason = None, str(error)
    cache.write_record("sets", key, {"value": value, "reason": reason, "measurement": measurement.to_dict()})
    return SetScore(value, reason, measurement)
