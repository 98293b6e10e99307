"""Pictures of a comparison, drawn with matplotlib's object API and its Agg renderer.

No pyplot: figures are plain `matplotlib.figure.Figure` objects, so nothing touches a
display, a global figure list or the process-wide backend setting.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..image import write_atomic
from ..metrics import GOAL

CROP_SIZE = 256
CROP_STRIDE = 8
PANEL_INCHES = 2.6
DPI = 100
# Crop panels are drawn at about twice their pixel size, so codec artefacts stay visible.
SHEET_DPI = 200


def _save(figure, path: Path, dpi: int = DPI) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    write_atomic(path, buffer.getvalue())


def _goal_text(metric: str) -> str:
    goal = GOAL.get(metric)
    if goal == "max":
        return "higher is better"
    if goal == "min":
        return "lower is better"
    if goal is not None:
        return f"best at {goal:g}"
    return ""


def rate_plot(path: Path, metric: str, curves: dict[str, tuple[list, list]], qualities: list) -> None:
    """`metric` against bpp, one curve per configuration; points whose value is missing are left out."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.add_subplot()
    for name, (rates, values) in curves.items():
        points = [(r, v, q) for r, v, q in zip(rates, values, qualities) if r is not None and v is not None and np.isfinite(v)]
        if not points:
            continue
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axes.set_xlabel("bits per pixel")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric} ({_goal_text(metric)})" if _goal_text(metric) else metric)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    _save(figure, path)


def detail_window(pixels: np.ndarray, size: int = CROP_SIZE, stride: int = CROP_STRIDE) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the size x size window with the most luma variance (all of a smaller image)."""
    height, width = pixels.shape[:2]
    window_height, window_width = min(size, height), min(size, width)
    luma = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    # Summed-area tables of luma and its square give every window's variance in O(1).
    sums = np.pad(luma.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    squares = np.pad((luma * luma).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tops = sorted(set(range(0, height - window_height + 1, stride)) | {height - window_height})
    lefts = sorted(set(range(0, width - window_width + 1, stride)) | {width - window_width})
    t = np.array(tops)[:, None]
    l = np.array(lefts)[None, :]

    def window_sum(table: np.ndarray) -> np.ndarray:
        return table[t + window_height, l + window_width] - table[t, l + window_width] - table[t + window_height, l] + table[t, l]

    area = window_height * window_width
    variance = window_sum(squares) / area - (window_sum(sums) / area) ** 2
    row, column = np.unravel_index(int(np.argmax(variance)), variance.shape)
    return tops[row], lefts[column], window_height, window_width


def crop_sheet(
    path: Path,
    title: str,
    original: np.ndarray,
    panels: dict[tuple[str, object], np.ndarray],
    captions: dict[tuple[str, object], str],
    configurations: list[str],
    qualities: list,
) -> tuple[int, int, int, int]:
    """One row per quality: the original, then every configuration, all cropped to the same
    detailed window. Returns the window (top, left, height, width)."""
    from matplotlib.figure import Figure

    top, left, height, width = detail_window(original)

    def crop(pixels: np.ndarray) -> np.ndarray:
        return pixels[top : top + height, left : left + width]

    columns = 1 + len(configurations)
    aspect = height / width
    figure = Figure(figsize=(PANEL_INCHES * columns, (PANEL_INCHES * aspect + 0.5) * len(qualities) + 0.4), layout="constrained")
    figure.suptitle(f"{title}  (crop {width}x{height} at x={left}, y={top})", fontsize="small")
    grid = figure.subplots(len(qualities), columns, squeeze=False)
    for row, quality in enumerate(qualities):
        cells = [("original", crop(original))] + [
            (captions[name, quality], crop(panels[name, quality])) for name in configurations
        ]
        for axes, (caption, pixels) in zip(grid[row], cells):
            axes.imshow(pixels, interpolation="nearest")
            axes.set_title(caption, fontsize="x-small")
            axes.set_axis_off()
    _save(figure, path, SHEET_DPI)
    return top, left, height, width
