"""The comparison's numbers as files: CompressAI-style JSON per configuration, a per-image CSV
and the Bjøntegaard table.

A configuration's JSON is what CompressAI's `compressai.utils.plot` and most papers' plotting
scripts read: `name`, `description` and `results`, a mapping from each quantity (`bpp`,
`psnr-rgb`, `ms-ssim-rgb`, ...) to a list with one entry per quality, in the order the
qualities were given. Per-image metrics are means over images (CompressAI's convention: the
mean of per-image PSNRs, not the PSNR of the mean MSE); set metrics (SWD, FID, KID) are
computed over all images at once. `encoding_time` and `decoding_time` are mean seconds per
image as in CompressAI; for an enhanced configuration decoding includes the enhancement,
which `enhancement_time` also gives alone. A value that could not be computed (an image too
small for MS-SSIM, PSNR of a lossless pair) is null. Extra top-level keys (`format`,
`version`, `images`, `stages`) do not disturb CompressAI's readers.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..image import write_atomic
from ..metrics import GOAL, bd_metric, bd_rate
from .meter import StageTotals
from .output import Output
from .subject import Configuration

RESULTS_FORMAT = "enhance.compare-results"
BD_FORMAT = "enhance.compare-bd"
VERSION = 1
BD_METHOD = "pchip"


def finite_or_none(value):
    """JSON has no infinity or NaN: such values (and nested ones) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def dump_json(path: Path, document: dict) -> None:
    write_atomic(path, (json.dumps(finite_or_none(document), indent=2, allow_nan=False) + "\n").encode())


def _mean(values: list) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def configuration_results(
    configuration: Configuration,
    qualities: list,
    outputs: list[Output],
    per_image_metrics: list[str],
    set_metrics: list[str],
    set_values: dict[tuple[str, object], float | None],
    stages: dict[str, StageTotals],
) -> dict:
    """The CompressAI-compatible document of one configuration (`outputs` are its own)."""
    by_quality = {quality: [o for o in outputs if o.quality == quality] for quality in qualities}
    results: dict[str, list] = {"quality": list(qualities), "bpp": [_mean([o.bpp for o in by_quality[q]]) for q in qualities]}
    for name in per_image_metrics:
        results[name] = [_mean([o.metrics.get(name) for o in by_quality[q]]) for q in qualities]
    for name in set_metrics:
        results[name] = [set_values.get((name, q)) for q in qualities]
    results["encoding_time"] = [_mean([o.encode.seconds for o in by_quality[q]]) for q in qualities]
    results["decoding_time"] = [
        _mean([o.decode.seconds + (o.enhance.seconds if o.enhance else 0.0) for o in by_quality[q]]) for q in qualities
    ]
    if configuration.kind == "enhanced":
        results["enhancement_time"] = [_mean([o.enhance.seconds for o in by_quality[q]]) for q in qualities]
    return {
        "format": RESULTS_FORMAT,
        "version": VERSION,
        "name": configuration.name,
        "description": configuration.description,
        "images": len({o.image for o in outputs}),
        "results": results,
        "stages": {name: totals.to_dict() for name, totals in stages.items()},
    }


def bd_table(results: dict[str, dict], metrics: list[str], anchor: str) -> dict:
    """BD-rate (%, negative = smaller files at equal quality) and BD-metric (test minus anchor, in
    the metric's units, at equal rate) for every ordered pair of configurations and metric."""
    comparable = [name for name in metrics if GOAL.get(name) in ("max", "min")]
    pairs: dict[str, dict] = {}
    for anchor_name, anchor_document in results.items():
        pairs[anchor_name] = {}
        for test_name, test_document in results.items():
            entries = {}
            for metric in comparable:
                entries[metric] = _bd_entry(anchor_document["results"], test_document["results"], metric)
            pairs[anchor_name][test_name] = entries
    return {
        "format": BD_FORMAT,
        "version": VERSION,
        "rate": "bpp",
        "method": BD_METHOD,
        "anchor": anchor,
        "metrics": comparable,
        "not_compared": {
            name: f"no better direction to integrate (ideal value {GOAL[name]})" for name in metrics if name not in comparable
        },
        "pairs": pairs,
    }


def _bd_entry(anchor: dict, test: dict, metric: str) -> dict:
    series = [anchor["bpp"], anchor[metric], test["bpp"], test[metric]]
    if any(value is None or not math.isfinite(value) for values in series for value in values):
        return {"bd-rate": None, "bd-metric": None, "reason": f"{metric} or bpp is missing at some quality"}
    entry: dict = {}
    reasons = []
    for label, function in (("bd-rate", bd_rate), ("bd-metric", bd_metric)):
        try:
            entry[label] = function(*series, method=BD_METHOD)
        except BadInput as error:
            entry[label] = None
            reasons.append(str(error))
    if reasons:
        entry["reason"] = "; ".join(dict.fromkeys(reasons))
    return entry


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def per_image_csv(outputs: list[Output], codec: str, per_image_metrics: list[str]) -> bytes:
    columns = ["image", "configuration", "codec", "quality", "steps", "bytes", "bpp", *per_image_metrics]
    columns += ["seconds", "encode_seconds", "decode_seconds", "enhance_seconds", "metrics_seconds"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for o in outputs:
        writer.writerow(
            _cell(value)
            for value in [
                o.image, o.configuration, codec, o.quality, o.steps, o.bytes, o.bpp,
                *(o.metrics.get(name) for name in per_image_metrics),
                o.seconds, o.encode.seconds, o.decode.seconds, o.enhance.seconds if o.enhance else None,
                o.metrics_measurement.seconds,
            ]
        )
    return buffer.getvalue().encode()
