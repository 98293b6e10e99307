"""`enhance compare`: a base codec against the same codec enhanced, side by side, in the field's formats.

`compare(dataset, output, codec=..., qualities=..., steps=...)` encodes every image of the
dataset at every quality, decodes it, enhances it at every step count (one sampling
trajectory per image and quality), scores everything and writes into `output`:

- `<configuration>.json`: one CompressAI-compatible file per configuration (`jpeg`,
  `jpeg+dirac-4`, ...; a full codec gives `<codec>-<steps>`), see `tables`;
- `per-image.csv`: one row per image, quality and configuration, with bpp (from the real
  bitstream: the codec's own bytes, without enhance's container), every per-image metric and
  the seconds each took;
- `bd-rate.json`: BD-rate and BD-metric for every ordered pair of configurations and every
  metric with a better direction (the report shows them against the anchor, by default the
  base codec);
- `plots/<metric>.png` (rate against each metric, one curve per configuration),
  `crops/<image>.png` (original, base and enhanced side by side on the image's most detailed
  256x256 window) and `report.html` linking them all;
- `summary.json`: the settings, notes, skipped images and cache statistics;
- `cache/`: every intermediate result (see `cache`), so adding a quality or a step count
  computes only what is new.

Metrics: all of `enhance.metrics.FULL_REFERENCE` per image, LPIPS and DISTS when their
backbone weights can be had, and per configuration and quality the set metrics SWD, and
FID/KID on HiFiC's half-overlapping 256-px patches when the Inception weights can be had.
Metrics left out for want of weights are named in a note, unless they were asked for by
name, in which case the WeightsError is raised. Time and peak memory of each stage
(encode, decode, enhance, metrics) are in each configuration's JSON.

A codec with no trained enhancer still gives its base-codec rows, with a note. Images that
cannot be read or coded are skipped with their reason; the rest go on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import BadInput, CodecUnavailable, EnhanceError, WeightsError
from ..image import DEFAULT_MAX_PIXELS
from .cache import ResultCache
from .run import (
    Configuration,
    DatasetImage,
    Output,
    ProgressCallback,
    SetScore,
    Subject,
    Work,
    checked_qualities,
    checked_step_counts,
    configurations_for,
    find_dataset,
    load_dataset_image,
    plan_metrics,
    process_image,
    resolve_enhancer,
    score_set,
    stage_totals,
)

SUMMARY_FORMAT = "enhance.compare-summary"
SUMMARY_VERSION = 1
# Files the comparison writes besides one JSON per configuration.
RESERVED_STEMS = {"per-image", "bd-rate", "summary", "report"}


def file_stem(name: str) -> str:
    """A name (configuration, metric, image label) as a safe file name stem."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "unnamed"


@dataclass
class Comparison:
    """What `compare` computed and wrote."""

    output: Path
    configurations: list[Configuration]
    qualities: list
    results: dict[str, dict]  # configuration name -> its CompressAI-compatible document
    outputs: list[Output]  # one per image, quality and configuration (the CSV rows)
    bd: dict
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cache: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # every file written, by its path relative to `output`

    @property
    def anchor(self) -> str:
        return self.bd["anchor"]


def compare(
    dataset: Path | str | Sequence[Path | str],
    output: Path | str,
    *,
    qualities: Sequence[int | float],
    codec: str = "jpeg",
    steps: Sequence[int] | None = None,
    codec_options: Mapping[str, object] | None = None,
    metrics: Sequence[str] | None = None,
    model: Path | str | None = None,
    device: str | None = None,
    seed: int = 0,
    consistent: bool = False,
    anchor: str | None = None,
    figures: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: ProgressCallback | None = None,
) -> Comparison:
    """Compares `codec` at `qualities` with and without the enhancer at each of `steps` over `dataset`.

    `steps` defaults to the enhancer's default; for a full generative codec it is the decoder's
    step counts. `model` is a DIRAC bundle directory (default: $ENHANCE_DIRAC_JPEG for JPEG,
    else the shipped model for the codec). `consistent` projects enhanced JPEGs onto their
    quantization constraint set, as `enhance run` does. `metrics` restricts the metrics (names
    from `enhance.metrics`); `anchor` names the configuration BD-rates are shown against.
    """
    output = Path(output)
    roots = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    qualities = checked_qualities(qualities)
    step_counts = checked_step_counts(steps)
    notes: list[str] = []

    images = find_dataset(roots)
    subject = Subject(name=codec, options=codec_options)
    subject.check_qualities(qualities)
    enhancer, enhancer_note = (None, None) if subject.full else resolve_enhancer(codec, model=model, device=device)
    configurations = configurations_for(subject, enhancer, step_counts, consistent=consistent, enhancer_note=enhancer_note, notes=notes)
    names = [configuration.name for configuration in configurations]
    stems = [file_stem(name) for name in names]
    if len(set(stems)) < len(stems) or set(stems) & RESERVED_STEMS:
        raise EnhanceError(f"codec {codec!r}: its configuration names {', '.join(names)} clash with each other or the report's files")
    anchor = anchor or names[0]
    if anchor not in names:
        raise EnhanceError(f"--anchor {anchor!r} is not one of the configurations: {', '.join(names)}")
    plan = plan_metrics(metrics, notes)
    cache = ResultCache(root=output / "cache")
    work = Work(subject=subject, enhancer=enhancer, configurations=configurations, qualities=qualities, seed=seed, consistent=consistent, cache=cache)

    processed: list[DatasetImage] = []
    outputs: list[Output] = []
    skipped: list[tuple[str, str]] = []
    sheets: list[tuple[str, Path]] = []
    for index, (label, path) in enumerate(images):
        if progress is not None:
            progress(index, len(images), label)
        try:
            image, pixels = load_dataset_image(label, path, max_pixels)
            image_outputs, pictures = process_image(work, image, pixels, plan)
        except (CodecUnavailable, WeightsError):
            raise
        except EnhanceError as error:
            # One unreadable or uncodable image must not cost the whole comparison.
            skipped.append((label, str(error)))
            continue
        processed.append(image)
        outputs.extend(image_outputs)
        if figures:
            sheets.append((label, _crop_sheet(output, index, image, pixels, pictures, image_outputs, configurations, qualities)))
    if progress is not None:
        progress(len(images), len(images), "")
    if not processed:
        raise BadInput(f"no usable image in {', '.join(map(str, roots))}: " + "; ".join(f"{label}: {reason}" for label, reason in skipped))

    set_scores = _score_sets(work, plan, processed, outputs, max_pixels)
    per_image_metrics = list(plan.per_image)
    set_metrics = list(plan.per_set)
    notes += _metric_notes(outputs, set_scores, per_image_metrics)

    from ..image import write_atomic
    from .tables import bd_table, configuration_results, dump_json, per_image_csv

    results: dict[str, dict] = {}
    files: dict[str, Path] = {}
    for configuration in configurations:
        own = [o for o in outputs if o.configuration == configuration.name]
        own_sets = [score for (name, _, _), score in set_scores.items() if name == configuration.name]
        own_values = {(metric, quality): score.value for (name, metric, quality), score in set_scores.items() if name == configuration.name}
        document = configuration_results(
            configuration, qualities, own, per_image_metrics, set_metrics, own_values, stage_totals(own, own_sets)
        )
        results[configuration.name] = document
        relative = f"{file_stem(configuration.name)}.json"
        files[relative] = output / relative
        dump_json(files[relative], document)

    files["per-image.csv"] = output / "per-image.csv"
    write_atomic(files["per-image.csv"], per_image_csv(outputs, codec, per_image_metrics))
    bd = bd_table(results, [*per_image_metrics, *set_metrics], anchor)
    files["bd-rate.json"] = output / "bd-rate.json"
    dump_json(files["bd-rate.json"], bd)

    settings = _settings(roots, subject, work, enhancer, model, qualities, len(processed))
    files["summary.json"] = output / "summary.json"
    dump_json(
        files["summary.json"],
        {
            "format": SUMMARY_FORMAT,
            "version": SUMMARY_VERSION,
            "settings": settings,
            "notes": notes,
            "skipped": [{"image": label, "reason": reason} for label, reason in skipped],
            "configurations": {name: f"{file_stem(name)}.json" for name in names},
            "cache": cache.statistics(),
        },
    )
    comparison = Comparison(
        output=output, configurations=configurations, qualities=qualities, results=results, outputs=outputs, bd=bd,
        notes=notes, skipped=skipped, cache=cache.statistics(), files=files,
    )
    if figures:
        _write_figures(comparison, settings, [*per_image_metrics, *set_metrics], sheets)
    return comparison


def _crop_sheet(output: Path, index: int, image: DatasetImage, pixels, pictures, image_outputs, configurations, qualities) -> Path:
    from .figures import crop_sheet

    captions = {}
    for o in image_outputs:
        psnr = o.metrics.get("psnr-rgb")
        detail = f", {psnr:.2f} dB" if psnr is not None else ""
        captions[o.configuration, o.quality] = f"{o.configuration} q{o.quality}\n{o.bpp:.3f} bpp{detail}"
    path = output / "crops" / f"{index:04d}_{file_stem(str(PurePosixPath(image.label).with_suffix('')))}.png"
    crop_sheet(path, image.label, pixels, pictures, captions, [c.name for c in configurations], qualities)
    return path


def _score_sets(work: Work, plan, processed: list[DatasetImage], outputs: list[Output], max_pixels: int):
    """Set metrics for every configuration and quality: {(configuration, metric, quality): score}."""
    set_scores: dict[tuple[str, str, object], SetScore] = {}
    if not plan.per_set:
        return set_scores
    originals = []
    for image in processed:
        reloaded, pixels = load_dataset_image(image.label, image.path, max_pixels)
        if reloaded.content != image.content:
            raise BadInput(f"{image.path}: the file changed while the comparison ran")
        originals.append(pixels)
    shapes = {image.label: image.shape for image in processed}
    contents = [image.content for image in processed]

    def load(o: Output):
        pixels = work.cache.read_image(o.cache_kind, o.cache_key, shapes[o.image])
        if pixels is None:
            raise EnhanceError(f"{work.cache.root}: the cached output for {o.image} vanished while the comparison ran")
        return pixels

    order = {image.label: position for position, image in enumerate(processed)}
    for configuration in work.configurations:
        for quality in work.qualities:
            chosen = sorted(
                (o for o in outputs if o.configuration == configuration.name and o.quality == quality), key=lambda o: order[o.image]
            )
            for name, metric in plan.per_set.items():
                set_scores[configuration.name, name, quality] = score_set(name, metric, originals, chosen, load, contents, work.cache)
    return set_scores


def _metric_notes(outputs: list[Output], set_scores: dict, per_image_metrics: list[str]) -> list[str]:
    notes = []
    total = len({o.image for o in outputs})
    for name in per_image_metrics:
        failed = [o for o in outputs if o.metrics.get(name) is None and name in o.metric_reasons]
        if failed:
            images = len({o.image for o in failed})
            notes.append(f"{name}: not computed for {images} of {total} images ({failed[0].metric_reasons[name]})")
    reasons: dict[str, str] = {}
    for (_, name, _), score in set_scores.items():
        if score.value is None and score.reason:
            reasons.setdefault(name, score.reason)
    notes += [f"{name}: not computed ({reason})" for name, reason in reasons.items()]
    return notes


def _settings(roots, subject: Subject, work: Work, enhancer, model, qualities, image_count: int) -> dict[str, str]:
    settings = {
        "dataset": ", ".join(map(str, roots)),
        "images": str(image_count),
        "codec": subject.describe(),
        "qualities": ", ".join(map(str, qualities)),
        "seed": str(work.seed),
    }
    if enhancer is not None:
        settings["enhancer"] = f"DIRAC {enhancer.identity}" + (f" from {model}" if model is not None else "")
        settings["steps"] = ", ".join(str(c.steps) for c in work.configurations if c.kind == "enhanced")
        settings["JPEG consistency projection"] = "on" if work.consistent else "off"
    elif subject.full:
        settings["steps"] = ", ".join(str(c.steps) if c.steps is not None else "default" for c in work.configurations)
    return settings


def _write_figures(comparison: Comparison, settings: dict[str, str], metric_names: list[str], sheets: list[tuple[str, Path]]) -> None:
    from .figures import rate_plot
    from .report import write_report

    output = comparison.output
    plots: dict[str, str] = {}
    for metric in metric_names:
        curves = {
            name: (document["results"]["bpp"], document["results"][metric])
            for name, document in comparison.results.items()
        }
        if all(value is None for _, values in curves.values() for value in values):
            continue
        path = output / "plots" / f"{file_stem(metric)}.png"
        rate_plot(path, metric, curves, comparison.qualities)
        plots[metric] = path.relative_to(output).as_posix()
    data_files = {relative: path.relative_to(output).as_posix() for relative, path in comparison.files.items()}
    comparison.files.update({relative: output / relative for relative in plots.values()})
    comparison.files["report.html"] = output / "report.html"
    write_report(
        comparison.files["report.html"],
        title=f"enhance compare: {settings['codec']}",
        settings=settings,
        notes=comparison.notes,
        skipped=comparison.skipped,
        results=comparison.results,
        metrics=metric_names,
        bd=comparison.bd,
        plots=plots,
        sheets=[(label, path.relative_to(output).as_posix()) for label, path in sheets],
        files=data_files,
    )
    comparison.files.update({path.relative_to(output).as_posix(): path for _, path in sheets})


__all__ = ["Comparison", "Configuration", "Output", "compare", "file_stem"]
