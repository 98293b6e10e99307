"""Rows of labelled, enlarged crops stacked into one sheet: the bench scripts' side-by-side views.

Every panel of a row is cut to the same window (the original's most detailed one, as
`enhance compare` picks it) and enlarged without interpolation, so that texture, noise,
blur and blocking can be told apart by eye.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from enhance.comparison.figures import detail_window

LABEL_HEIGHT = 14
GAP = 4


def row_image(panels: list[tuple[str, np.ndarray]], crop: int, zoom: int) -> Image.Image:
    """One row: each (label, pixels) panel cropped to the first panel's most detailed window."""
    top, left, height, width = detail_window(panels[0][1], size=crop)
    cell = (width * zoom, height * zoom + LABEL_HEIGHT)
    row = Image.new("RGB", (cell[0] * len(panels) + GAP * (len(panels) - 1), cell[1]), "white")
    draw = ImageDraw.Draw(row)
    for index, (label, pixels) in enumerate(panels):
        window = Image.fromarray(pixels[top : top + height, left : left + width])
        x = index * (cell[0] + GAP)
        row.paste(window.resize((cell[0], cell[1] - LABEL_HEIGHT), Image.Resampling.NEAREST), (x, LABEL_HEIGHT))
        draw.text((x + 2, 1), label, fill="black")
    return row


def save_sheet(rows: list[Image.Image], out: Path) -> None:
    """Stacks `rows` into one image at `out` and says its size."""
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height + 6 for r in rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 6
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True, **({"quality": 92} if out.suffix.lower() in {".jpg", ".jpeg"} else {}))
    print(f"{out}: {sheet.width}x{sheet.height}, {out.stat().st_size / 1e6:.2f} MB")
