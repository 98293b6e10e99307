"""Running a comparison: every image through the base codec, the enhancer and the metrics.

For each image and quality the base codec encodes and decodes once; the enhancer then runs
one sampling trajectory up to the largest step count and yields every smaller one on the
way (`enhance_stops`), so steps 1, 4, 20 cost 20 steps, not 25. A full generative codec
(a plugin that both encodes and decodes) decodes once per step count instead. Every result
goes through `ResultCache`, so a rerun with another quality or step count computes only
what is new.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import metrics as quality_metrics
from .. import registry
from ..errors import BadInput, CodecUnavailable, EnhanceError, WeightsError
from ..image import apply_orientation, load_image
from .cache import ResultCache, cache_key, content_hash
from .meter import Measurement, StageTotals, measure

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

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Configuration:
    """One curve of the comparison: the base codec, the base codec + enhancer at n steps, or a full codec at n steps."""

    name: str
    kind: str  # "base", "enhanced" or "full"
    steps: int | None
    description: str


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


@dataclass(frozen=True)
class DatasetImage:
    label: str  # path relative to the dataset root, as shown in tables
    path: Path
    content: str  # content hash of the displayed pixels
    shape: tuple[int, int, int]


# --- inputs -----------------------------------------------------------------------


def find_dataset(roots: Sequence[Path | str]) -> list[tuple[str, Path]]:
    """(label, path) for every image file under `roots`; a missing root or no images at all is BadInput."""
    from ..train.data import find_images

    roots = [Path(root) for root in roots]
    if not roots:
        raise BadInput("no dataset given")
    for root in roots:
        if not root.exists():
            raise BadInput(f"{root}: no such file or folder")
    try:
        paths = find_images(roots)
    except FileNotFoundError as error:
        raise BadInput(str(error)) from None
    found = []
    taken: set[str] = set()
    for path in paths:
        root = next(root for root in roots if path == root or root in path.parents)
        label = path.name if path == root else path.relative_to(root).as_posix()
        if label in taken:
            label = f"{root.name}/{label}"
        taken.add(label)
        found.append((label, path))
    return found


def checked_qualities(values: Sequence) -> list:
    """Qualities as numbers, duplicates dropped, in the order given (the order of the JSON lists)."""
    checked = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EnhanceError(f"qualities must be numbers, got {value!r}")
        value = int(value) if float(value).is_integer() else float(value)
        if value not in checked:
            checked.append(value)
    if not checked:
        raise EnhanceError("give at least one quality")
    return checked


def checked_step_counts(steps: Sequence[int] | None) -> list[int] | None:
    if steps is None:
        return None
    counts = []
    for value in steps:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise EnhanceError(f"step counts must be whole numbers >= 1, got {value!r}")
        if value not in counts:
            counts.append(value)
    return counts or None


# --- the codec under test ---------------------------------------------------------


class Subject:
    """The codec under test: a base codec (`encode(image, quality)`, `decode(bytes)`) or a
    full generative codec (`encode(image, rate)`, `decode(bytes, *, steps, seed)`)."""

    def __init__(self, *, name: str, options: Mapping | None = None):
        options = dict(options or {})
        kind = "codec"
        if name not in registry.factories("codec") and name in registry.factories("full_codec"):
            kind = "full_codec"
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
        self.rate_range = tuple(self.instance.rate_range if self.full else self.instance.rate_range)

    def check_qualities(self, qualities: list) -> None:
        low, high = self.rate_range
        outside = [quality for quality in qualities if not low <= quality <= high]
        if outside:
            raise EnhanceError(f"codec {self.name}: {', '.join(map(str, outside))} outside its range {low:g}..{high:g}")

    def key_fields(self) -> dict:
        return {"codec": self.name, "full": self.full, "options": self.options}

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
        pixels = self.instance.decode(data, steps=steps, seed=seed) if self.full else self.instance.decode(data)
        if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != tuple(shape):
            got = f"{getattr(pixels, 'dtype', type(pixels).__name__)} {getattr(pixels, 'shape', '')}"
            raise EnhanceError(f"codec {self.name}: decoded {got} for a uint8 {tuple(shape)} image")
        return pixels


def resolve_enhancer(codec: str, *, model: Path | str | None, device: str | None):
    """(enhancer, None), or (None, why there is none) for a codec with no trained enhancer.

    A codec with a shipped model (JPEG) must load it: a missing or broken bundle raises.
    $ENHANCE_DIRAC_JPEG stands for `model` with the JPEG codec, as in `enhance run`.
    """
    from ..enhancers import DEFAULT_BUNDLES, load_enhancer
    from ..runs import MODEL_ENV

    if model is None and codec == "jpeg":
        model = os.environ.get(MODEL_ENV) or None
    if model is None and codec not in DEFAULT_BUNDLES:
        return None, f"no trained enhancer for codec {codec!r} (trained: {', '.join(sorted(DEFAULT_BUNDLES))})"
    try:
        return load_enhancer(codec, bundle=Path(model) if model is not None else None, device=device), None
    except EnhanceError as error:
        if codec in DEFAULT_BUNDLES:
            raise
        return None, f"no enhancer for codec {codec!r}: {error}"


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
    from ..runs import check_steps

    projection = ", JPEG outputs projected onto their quantization constraint set" if consistent else ""
    for count in steps or [enhancer.default_steps]:
        check_steps(enhancer, count)
        configurations.append(
            Configuration(
                name=f"{subject.name}+dirac-{count}",
                kind="enhanced",
                steps=count,
                description=f"{subject.describe()}, then DIRAC {count} step{'s' if count > 1 else ''} (model {enhancer.identity}){projection}",
            )
        )
    return configurations


# --- metrics ----------------------------------------------------------------------


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


# --- one image --------------------------------------------------------------------


def load_dataset_image(label: str, path: Path, max_pixels: int) -> tuple[DatasetImage, np.ndarray]:
    loaded = load_image(path, max_pixels=max_pixels)
    # A writable copy: some metrics hand arrays to torch, which warns on read-only ones.
    pixels = np.array(apply_orientation(loaded.pixels, loaded.orientation), order="C")
    return DatasetImage(label=label, path=path, content=content_hash(pixels), shape=pixels.shape), pixels


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


def _enhancement_plan(data: bytes, quality, consistent: bool) -> tuple[float, bool]:
    """(rate given to the enhancer, whether to project onto the JPEG constraint set)."""
    from ..api import native_codec
    from ..enhancement import jpeg_rate
    from ..jpeg import inspect_jpeg
    from ..runs import PROJECTABLE_COLOUR_SPACES

    if native_codec(data) != "jpeg":
        return float(quality), False
    # The receiver knows only the file: the quality estimated from its tables, as `enhance run` sees it.
    return jpeg_rate(data), consistent and inspect_jpeg(data).colour_space in PROJECTABLE_COLOUR_SPACES


def _enhanced(
    work: Work, image: DatasetImage, encoded_key: str, data: bytes, decoded: np.ndarray, quality, counts: list[int]
) -> dict[int, tuple[str, np.ndarray, Measurement]]:
    """{steps: (key, pixels, measurement)}; missing step counts come from one trajectory.

    The trajectory's time is shared among its stops in proportion to their step counts
    (each step is one network evaluation), plus each stop's own projection time.
    """
    cache, enhancer = work.cache, work.enhancer
    rate, project = _enhancement_plan(data, quality, work.consistent)
    keys = {
        count: cache_key(
            {
                "stage": "enhanced",
                "encoded": encoded_key,
                "enhancer": enhancer.identity,
                "tile": getattr(enhancer, "tile", None),
                "steps": count,
                "seed": work.seed,
                "consistent": project,
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
    from ..consistency import project_to_jpeg

    with measure() as trajectory:
        stops = enhancer.enhance_stops(decoded, rate=rate, stops=missing, seed=work.seed)
    longest = max(missing)
    for count in missing:
        pixels = stops[count]
        with measure() as projection:
            if project:
                pixels = project_to_jpeg(pixels, data)
        peaks = [p for p in (trajectory.peak_rss_mib, projection.peak_rss_mib) if p is not None]
        spent = Measurement(
            seconds=trajectory.seconds * count / longest + projection.seconds,
            peak_rss_mib=max(peaks) if peaks else None,
            peak_cuda_mib=trajectory.peak_cuda_mib,
        )
        cache.write_image("enhanced", keys[count], pixels)
        cache.write_record("enhanced", keys[count], {"enhance": spent.to_dict(), "rate": rate, "projected": project})
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
