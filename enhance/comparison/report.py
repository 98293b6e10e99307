"""The one-page HTML report of a comparison: settings, notes, results, BD-rates and pictures.

Every link is relative to the report's folder, so the output folder can be moved or
served as it is; every text and file name is escaped, and every link is URL-quoted.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from urllib.parse import quote

from ..image import write_atomic

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.plots img { width: 48%; min-width: 320px; }
.note { color: #8a5a00; }
"""


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _link(relative: str) -> str:
    return quote(relative, safe="/")


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return _text(value)
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.1f}"
    return _text(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{cell}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    path: Path,
    *,
    title: str,
    settings: dict[str, str],
    notes: list[str],
    skipped: list[tuple[str, str]],
    results: dict[str, dict],
    metrics: list[str],
    bd: dict,
    plots: dict[str, str],
    sheets: list[tuple[str, str]],
    files: dict[str, str],
) -> None:
    """`plots`: metric -> relative PNG path; `sheets`: (image label, relative PNG path);
    `files`: caption -> relative path of the data files."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        _table(["setting", "value"], [[_text(key), _text(value)] for key, value in settings.items()]),
    ]
    if notes or skipped:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f'<li class="note">{_text(note)}</li>' for note in notes]
        parts += [f'<li class="note">skipped {_text(label)}: {_text(reason)}</li>' for label, reason in skipped]
        parts.append("</ul>")

    parts += _results_section(results, metrics)
    parts += _bd_section(bd)
    parts += _figures_section(plots, sheets)
    parts.append("<h2>Files</h2><ul>")
    parts += [f'<li><a href="{_link(relative)}">{_text(caption)}</a></li>' for caption, relative in files.items()]
    parts.append("</ul></body></html>")
    write_atomic(path, ("\n".join(parts) + "\n").encode())


def _results_section(results: dict[str, dict], metrics: list[str]) -> list[str]:
    parts = ["<h2>Results</h2>"]
    for name, document in results.items():
        values = document["results"]
        columns = [key for key in ["bpp", *metrics, "encoding_time", "decoding_time", "enhancement_time"] if key in values]
        parts.append(f"<h3>{_text(name)}</h3><p>{_text(document['description'])}; {document['images']} images</p>")
        rows = [
            [_text(quality)] + [_number(values[key][index]) for key in columns]
            for index, quality in enumerate(values["quality"])
        ]
        parts.append(_table(["quality", *map(_text, columns)], rows))
    return parts


def _bd_section(bd: dict) -> list[str]:
    parts = []
    anchor = bd["anchor"]
    parts.append(f"<h2>BD-rate against {_text(anchor)}</h2>")
    parts.append(
        "<p>Percent bitrate change at equal quality (negative: smaller files), over the quality range both "
        f"curves cover; {_text(bd['method'])} interpolation. The full table of every pair is in bd-rate.json.</p>"
    )
    rows = []
    for test, entries in bd["pairs"][anchor].items():
        rows.append([_text(test)] + [_number(entries[metric]["bd-rate"], 3) for metric in bd["metrics"]])
    parts.append(_table(["configuration", *map(_text, bd["metrics"])], rows))
    return parts


def _figures_section(plots: dict[str, str], sheets: list[tuple[str, str]]) -> list[str]:
    parts = []
    if plots:
        parts.append('<h2>Rate against quality</h2><div class="plots">')
        parts += [
            f'<a href="{_link(relative)}"><img src="{_link(relative)}" alt="{_text(metric)} against bpp"></a>'
            for metric, relative in plots.items()
        ]
        parts.append("</div>")
    if sheets:
        parts.append("<h2>Crops</h2>")
        for label, relative in sheets:
            parts.append(f'<h3>{_text(label)}</h3><a href="{_link(relative)}"><img src="{_link(relative)}" alt="{_text(label)}"></a>')
    return parts
