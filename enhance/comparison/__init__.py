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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..enhance_one import find_enhancer
from ..errors import BadInput, CodecUnavailable, EnhanceError, WeightsError
from ..image import DEFAULT_MAX_PIXELS
from .cache import ResultCache
from .dataset import DatasetImage, checked_qualities, checked_step_counts, find_dataset, load_dataset_image
from .output import Output
from .pipeline import ProgressCallback, Work, process_image
from .scoring import MetricPlan, plan_metrics
from .subject import Configuration, Subject, check_names, configurations_for, file_stem
from .writing import crop_sheet_for, write_results

SUMMARY_FORMAT = "enhance.compare-summary"
SUMMARY_VERSION = 1


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
    enhancer_name: str = "dirac", engine=None,
) -> Comparison:
    """Compares `codec` at `qualities` with and without the enhancer at each of `steps` over `dataset`.

    `steps` defaults to the enhancer's default; for a full generative codec it is the decoder's
    step counts. `model` is a bundle directory for the enhancer (`enhancer_name`, a registered
    name; default: $ENHANCE_DIRAC_JPEG for JPEG, else the shipped model for the codec).
    `consistent` projects enhanced JPEGs onto their quantization constraint set, as
    `enhance run` does. `metrics` restricts the metrics (names from `enhance.metrics`);
    `anchor` names the configuration BD-rates are shown against. `engine`: see `_engine_pass`."""
    output = Path(output)
    roots = [dataset] if isinstance(dataset, (str, Path)) else list(dataset)
    qualities = checked_qualities(qualities)
    step_counts = checked_step_counts(steps)
    notes: list[str] = []

    images = find_dataset(roots)
    subject = Subject(name=codec, options=codec_options)
    subject.check_qualities(qualities)
    found, reason = (None, None) if subject.full else find_enhancer(codec, model=model, name=enhancer_name, device=device)
    configurations = configurations_for(subject, found, step_counts, consistent=consistent, enhancer_note=reason, notes=notes)
    anchor = check_names(codec, configurations, anchor)
    plan = plan_metrics(metrics, notes)
    work = Work(
        subject=subject, enhancer=found, configurations=configurations, qualities=qualities, seed=seed,
        consistent=consistent, cache=ResultCache(root=output / "cache"),
    )
    _engine_pass(engine, _engine_spec(work, found, model, enhancer_name, device, plan, output, max_pixels), images, progress)
    passed = _every_image(work, images, plan, max_pixels, progress, sheets=output if figures else None)
    if not passed.images:
        reasons = "; ".join(f"{label}: {why}" for label, why in passed.skipped)
        raise BadInput(f"no usable image in {', '.join(map(str, roots))}: {reasons}")
    settings = _settings(roots, subject, work, found, model, qualities, len(passed.images))
    written = write_results(
        output, work, plan, passed.images, passed.originals, passed.outputs, settings=settings, notes=notes,
        skipped=passed.skipped, anchor=anchor, sheets=passed.sheets if figures else None,
        summary_header={"format": SUMMARY_FORMAT, "version": SUMMARY_VERSION},
    )
    return Comparison(
        output=output, configurations=configurations, qualities=qualities, results=written.results,
        outputs=passed.outputs, bd=written.bd, notes=notes, skipped=passed.skipped,
        cache=work.cache.statistics(), files=written.files,
    )


@dataclass
class _Pass:
    """What the per-image pass gave: the images used (and their pixels), outputs, skips, crop sheets."""

    images: list[DatasetImage] = field(default_factory=list)
    originals: list[np.ndarray] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sheets: list[tuple[str, Path]] = field(default_factory=list)  # (label, crop sheet) per image


def _every_image(work: Work, images: list[tuple[str, Path]], plan: MetricPlan, max_pixels: int, progress, *, sheets: Path | None) -> _Pass:
    """Each image through every configuration; an unreadable or uncodable image is skipped, not fatal.

    With `sheets` (the output folder), each image's crop sheet is drawn as soon as it is
    done, so its outputs need not stay in memory; originals stay only for set metrics.
    """
    passed = _Pass()
    for index, (label, path) in enumerate(images):
        if progress is not None:
            progress(index, len(images), label)
        try:
            image, pixels = load_dataset_image(label, path, max_pixels)
            image_outputs, pictures = process_image(work, image, pixels, plan)
        except (CodecUnavailable, WeightsError):
            raise
        except EnhanceError as error:
            passed.skipped.append((label, str(error)))
            continue
        passed.images.append(image)
        if plan.per_set:
            passed.originals.append(pixels)
        passed.outputs.extend(image_outputs)
        if sheets is not None:
            sheet = crop_sheet_for(sheets, index, image, pixels, pictures, image_outputs, work.configurations, work.qualities)
            passed.sheets.append((label, sheet))
    if progress is not None:
        progress(len(images), len(images), "")
    return passed


def _engine_pass(engine, spec: dict, images: list[tuple[str, Path]], progress) -> None:
    """With an engine (an `enhance.engines.ray_engine.RayEngine`), the per-image pass runs on its
    workers first, into the same cache; the local pass that follows finds every result there."""
    if engine is not None:
        engine.compare_pass(spec, images, progress)


def _engine_spec(work: Work, enhancer, model, enhancer_name: str, device, plan: MetricPlan, output: Path, max_pixels: int) -> dict:
    """What an engine's workers need to redo `work` for any image (plain values, to travel)."""
    return {
        "codec": work.subject.name, "codec_options": dict(work.subject.options or {}), "configurations": work.configurations,
        "qualities": work.qualities, "seed": work.seed, "consistent": work.consistent, "metrics": list(plan.per_image),
        "model": None if model is None else str(model), "enhancer_name": enhancer_name, "device": device,
        "enhancer_identity": getattr(enhancer, "identity", None), "cache": str(work.cache.root.parent), "max_pixels": max_pixels,
    }


def _settings(roots, subject: Subject, work: Work, enhancer, model, qualities, image_count: int) -> dict[str, str]:
    settings = {
        "dataset": ", ".join(map(str, roots)),
        "images": str(image_count),
        "codec": subject.describe(),
        "qualities": ", ".join(map(str, qualities)),
        "seed": str(work.seed),
    }
    if enhancer is not None:
        settings["enhancer"] = f"{enhancer.name.upper()} {enhancer.identity}" + (f" from {model}" if model is not None else "")
        settings["steps"] = ", ".join(str(c.steps) for c in work.configurations if c.kind == "enhanced")
        settings["JPEG consistency projection"] = "on" if work.consistent else "off"
    elif subject.full:
        settings["steps"] = ", ".join(str(c.steps) if c.steps is not None else "default" for c in work.configurations)
    return settings


__all__ = ["Comparison", "Configuration", "Output", "compare", "file_stem"]
