"""The per-image pass of a comparison: encode, decode, enhance and score, every result cached.

For each image and quality the base codec encodes and decodes once; the enhancer then runs
one sampling trajectory up to the largest step count and yields every smaller one on the
way (`enhance_stops`), so steps 1, 4, 20 cost 20 steps, not 25. A full generative codec
(a plugin that both encodes and decodes) decodes once per step count instead. Every result
goes through `ResultCache`, so a rerun with another quality or step count computes only
what is new. What the enhancer is conditioned on, and whether a result is projected, is
decided by `enhance.enhance_one`, as for `enhance run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..enhance_one import CodedImage, enhance_stops, plan, project
from .cache import ResultCache, cache_key
from .dataset import DatasetImage
from .meter import Measurement, StageTotals, measure
from .output import Output
from .scoring import MetricPlan, SetScore, score_output
from .subject import Configuration, Subject

# progress(images done, images in all, label of the image starting; "" when all are done)
ProgressCallback = Callable[[int, int, str], None]

@dataclass
class Work:
    """Everything the per-image pass needs, fixed for the whole comparison."""

    subject: Subject
    enhancer: object | None
    configurations: list[Configuration]
    qualities: list
    seed: int
    consistent: bool
    cache: ResultCache


def _encoded(work: Work, image: DatasetImage, pixels: np.ndarray, quality) -> tuple[str, bytes, dict, np.ndarray | None]:
    """(key, bitstream, record, decoded) for one quality; `decoded` is None for a full codec (decoded per step count)."""
    cache, subject = work.cache, work.subject
    key = cache_key({"stage": "encoded", "image": image.content, **subject.key_fields(), "quality": quality})
    record = cache.read_record("encoded", key)
    data = cache.read_bytes("encoded", key) if record is not None else None
    decoded = None
    if data is not None and not subject.full:
        decoded = cache.read_image("encoded", key, image.shape)
    complete = data is not None and len(data) == record.get("bytes") and (subject.full or decoded is not None)
    cache.count("encoded", complete)
    if complete:
        return key, data, record, decoded
    with measure() as encoding:
        data = subject.encode(pixels, quality)
    record = {"bytes": len(data), "encode": encoding.to_dict()}
    cache.write_bytes("encoded", key, data)
    if not subject.full:
        with measure() as decoding:
            decoded = subject.decode(data, image.shape, steps=None, seed=work.seed)
        record["decode"] = decoding.to_dict()
        cache.write_image("encoded", key, decoded)
    cache.write_record("encoded", key, record)
    return key, data, record, decoded


def _full_decoded(work: Work, image: DatasetImage, encoded_key: str, data: bytes, steps: int | None) -> tuple[str, np.ndarray, Measurement]:
    cache = work.cache
    key = cache_key({"stage": "decoded", "encoded": encoded_key, "steps": steps, "seed": work.seed})
    record = cache.read_record("decoded", key)
    pixels = cache.read_image("decoded", key, image.shape) if record is not None else None
    cache.count("decoded", pixels is not None)
    if pixels is not None:
        return key, pixels, Measurement.from_dict(record.get("decode"))
    with measure() as decoding:
        pixels = work.subject.decode(data, image.shape, steps=steps, seed=work.seed)
    cache.write_image("decoded", key, pixels)
    cache.write_record("decoded", key, {"decode": decoding.to_dict()})
    return key, pixels, decoding


def _enhanced(
    work: Work, image: DatasetImage, encoded_key: str, data: bytes, decoded: np.ndarray, quality, counts: list[int]
) -> dict[int, tuple[str, np.ndarray, Measurement]]:
    """{steps: (key, pixels, measurement)}; missing step counts come from one trajectory.

    The trajectory's time is shared among its stops in proportion to their step counts
    (each step is one network evaluation), plus each stop's own projection time.
    """
    cache, enhancer = work.cache, work.enhancer
    # The receiver knows only the file: for a JPEG, the quality estimated from its tables.
    coded = CodedImage.read(data, rate=float(quality))
    chosen = plan(coded, consistent=work.consistent and coded.jpeg is not None)
    keys = {
        count: cache_key(
            {
                "stage": "enhanced",
                "encoded": encoded_key,
                "enhancer": enhancer.identity,
                "tile": getattr(enhancer, "tile", None),
                "steps": count,
                "seed": work.seed,
                "consistent": chosen.project,
            }
        )
        for count in counts
    }
    found: dict[int, tuple[str, np.ndarray, Measurement]] = {}
    for count, key in keys.items():
        record = cache.read_record("enhanced", key)
        pixels = cache.read_image("enhanced", key, image.shape) if record is not None else None
        cache.count("enhanced", pixels is not None)
        if pixels is not None:
            found[count] = (key, pixels, Measurement.from_dict(record.get("enhance")))
    missing = [count for count in counts if count not in found]
    if not missing:
        return found
    with measure() as trajectory:
        stops = enhance_stops(decoded, chosen, enhancer=enhancer, stops=missing, seed=work.seed)
    longest = max(missing)
    for count in missing:
        pixels = stops[count]
        with measure() as projection:
            pixels = project(pixels, coded, chosen)
        peaks = [p for p in (trajectory.peak_rss_mib, projection.peak_rss_mib) if p is not None]
        spent = Measurement(
            seconds=trajectory.seconds * count / longest + projection.seconds,
            peak_rss_mib=max(peaks) if peaks else None,
            peak_cuda_mib=trajectory.peak_cuda_mib,
        )
        cache.write_image("enhanced", keys[count], pixels)
        cache.write_record("enhanced", keys[count], {"enhance": spent.to_dict(), "rate": chosen.rate, "projected": chosen.project})
        found[count] = (keys[count], pixels, spent)
    return found


def process_image(work: Work, image: DatasetImage, pixels: np.ndarray, plan: MetricPlan) -> tuple[list[Output], dict]:
    """Every configuration's output for one image at every quality, scored.

    Returns the outputs and {(configuration, quality): pixels} for the crop sheet.
    """
    outputs: list[Output] = []
    pictures: dict = {}
    pixel_count = image.shape[0] * image.shape[1]
    enhanced_counts = [c.steps for c in work.configurations if c.kind == "enhanced"]
    for quality in work.qualities:
        key, data, record, decoded = _encoded(work, image, pixels, quality)
        encoding = Measurement.from_dict(record.get("encode"))
        common = dict(image=image.label, quality=quality, bytes=len(data), bpp=8 * len(data) / pixel_count, encode=encoding)
        if work.subject.full:
            for configuration in work.configurations:
                decoded_key, decoded_pixels, decoding = _full_decoded(work, image, key, data, configuration.steps)
                outputs.append(
                    Output(configuration=configuration.name, steps=configuration.steps, cache_kind="decoded", cache_key=decoded_key, decode=decoding, **common)
                )
                pictures[configuration.name, quality] = decoded_pixels
            continue
        decoding = Measurement.from_dict(record.get("decode"))
        base = work.configurations[0]
        outputs.append(Output(configuration=base.name, steps=None, cache_kind="encoded", cache_key=key, decode=decoding, **common))
        pictures[base.name, quality] = decoded
        if enhanced_counts:
            enhanced = _enhanced(work, image, key, data, decoded, quality, enhanced_counts)
            for configuration in work.configurations[1:]:
                enhanced_key, enhanced_pixels, spent = enhanced[configuration.steps]
                outputs.append(
                    Output(
                        configuration=configuration.name, steps=configuration.steps, cache_kind="enhanced",
                        cache_key=enhanced_key, decode=decoding, enhance=spent, **common,
                    )
                )
                pictures[configuration.name, quality] = enhanced_pixels
    for output in outputs:
        score_output(output, pixels, pictures[output.configuration, output.quality], plan, work.cache)
    return outputs, pictures


def stage_totals(outputs: list[Output], set_scores: list[SetScore]) -> dict[str, StageTotals]:
    stages = {name: StageTotals() for name in ("encode", "decode", "enhance", "metrics")}
    for output in outputs:
        stages["encode"].add(output.encode)
        stages["decode"].add(output.decode)
        if output.enhance is not None:
            stages["enhance"].add(output.enhance)
        stages["metrics"].add(output.metrics_measurement)
    for score in set_scores:
        stages["metrics"].add(score.measurement)
    return {name: totals for name, totals in stages.items() if totals.count}
