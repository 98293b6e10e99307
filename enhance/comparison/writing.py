"""Writing a comparison: one CompressAI-compatible JSON per configuration, the per-image CSV,
BD-rates, the summary, and (with figures) plots, crop sheets and the HTML report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import EnhanceError
from ..image import write_atomic
from .dataset import DatasetImage
from .output import Output
from .pipeline import Work, stage_totals
from .scoring import MetricPlan, SetScore, score_set
from .subject import file_stem
from .tables import bd_table, configuration_results, dump_json, per_image_csv


@dataclass
class Written:
    results: dict[str, dict]  # configuration name -> its document
    bd: dict
    files: dict[str, Path]  # every file written, by its path relative to the output folder


def write_results(
    output: Path,
    work: Work,
    plan: MetricPlan,
    processed: list[DatasetImage],
    originals: list[np.ndarray],
    outputs: list[Output],
    *,
    settings: dict[str, str],
    notes: list[str],
    skipped: list[tuple[str, str]],
    anchor: str,
    sheets: list[tuple[str, Path]] | None,
    summary_header: dict,
) -> Written:
    """Scores the sets, then writes every file; `notes` gains the metrics that could not be computed."""
    set_scores = score_sets(work, plan, processed, originals, outputs)
    per_image_metrics, set_metrics = list(plan.per_image), list(plan.per_set)
    notes += _metric_notes(outputs, set_scores, per_image_metrics)
    results, files = _configuration_documents(output, work, outputs, set_scores, per_image_metrics, set_metrics)
    files["per-image.csv"] = output / "per-image.csv"
    write_atomic(files["per-image.csv"], per_image_csv(outputs, work.subject.name, per_image_metrics))
    bd = bd_table(results, [*per_image_metrics, *set_metrics], anchor)
    files["bd-rate.json"] = output / "bd-rate.json"
    dump_json(files["bd-rate.json"], bd)
    files["summary.json"] = output / "summary.json"
    dump_json(
        files["summary.json"],
        {
            **summary_header,
            "settings": settings,
            "notes": notes,
            "skipped": [{"image": label, "reason": reason} for label, reason in skipped],
            "configurations": {c.name: f"{file_stem(c.name)}.json" for c in work.configurations},
            "cache": work.cache.statistics(),
        },
    )
    written = Written(results=results, bd=bd, files=files)
    if sheets is not None:
        _write_figures(output, written, work.qualities, settings, notes, skipped, [*per_image_metrics, *set_metrics], sheets)
    return written


def _configuration_documents(output: Path, work: Work, outputs, set_scores, per_image_metrics, set_metrics):
    results: dict[str, dict] = {}
    files: dict[str, Path] = {}
    for configuration in work.configurations:
        own = [o for o in outputs if o.configuration == configuration.name]
        own_sets = [score for (name, _, _), score in set_scores.items() if name == configuration.name]
        own_values = {(metric, quality): score.value for (name, metric, quality), score in set_scores.items() if name == configuration.name}
        document = configuration_results(
            configuration, work.qualities, own, per_image_metrics, set_metrics, own_values, stage_totals(own, own_sets)
        )
        results[configuration.name] = document
        relative = f"{file_stem(configuration.name)}.json"
        files[relative] = output / relative
        dump_json(files[relative], document)
    return results, files


def crop_sheet_for(output: Path, index: int, image: DatasetImage, pixels, pictures, image_outputs, configurations, qualities) -> Path:
    from .figures import crop_sheet

    captions = {}
    for o in image_outputs:
        psnr = o.metrics.get("psnr-rgb")
        detail = f", {psnr:.2f} dB" if psnr is not None else ""
        captions[o.configuration, o.quality] = f"{o.configuration} q{o.quality}\n{o.bpp:.3f} bpp{detail}"
    path = output / "crops" / f"{index:04d}_{file_stem(str(PurePosixPath(image.label).with_suffix('')))}.png"
    crop_sheet(path, image.label, pixels, pictures, captions, [c.name for c in configurations], qualities)
    return path


def score_sets(work: Work, plan, processed: list[DatasetImage], originals: list[np.ndarray], outputs: list[Output]):
    """Set metrics for every configuration and quality: {(configuration, metric, quality): score}."""
    set_scores: dict[tuple[str, str, object], SetScore] = {}
    if not plan.per_set:
        return set_scores
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


def _write_figures(output: Path, comparison: Written, qualities, settings: dict[str, str], notes, skipped, metric_names: list[str], sheets: list[tuple[str, Path]]) -> None:
    from .figures import rate_plot
    from .report import write_report

    plots: dict[str, str] = {}
    for metric in metric_names:
        curves = {
            name: (document["results"]["bpp"], document["results"][metric])
            for name, document in comparison.results.items()
        }
        if all(value is None for _, values in curves.values() for value in values):
            continue
        path = output / "plots" / f"{file_stem(metric)}.png"
        rate_plot(path, metric, curves, qualities)
        plots[metric] = path.relative_to(output).as_posix()
    data_files = {relative: path.relative_to(output).as_posix() for relative, path in comparison.files.items()}
    comparison.files.update({relative: output / relative for relative in plots.values()})
    comparison.files["report.html"] = output / "report.html"
    write_report(
        comparison.files["report.html"],
        title=f"enhance compare: {settings['codec']}",
        settings=settings,
        notes=notes,
        skipped=skipped,
        results=comparison.results,
        metrics=metric_names,
        bd=comparison.bd,
        plots=plots,
        sheets=[(label, path.relative_to(output).as_posix()) for label, path in sheets],
        files=data_files,
    )
    comparison.files.update({path.relative_to(output).as_posix(): path for _, path in sheets})
