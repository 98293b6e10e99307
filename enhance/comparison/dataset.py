"""The comparison's inputs: the images of a dataset, the qualities and the step counts asked for."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput, EnhanceError
from ..image import apply_orientation, find_images, load_image
from .cache import content_hash


@dataclass(frozen=True)
class DatasetImage:
    label: str  # path relative to the dataset root, as shown in tables
    path: Path
    content: str  # content hash of the displayed pixels
    shape: tuple[int, int, int]


def find_dataset(roots: Sequence[Path | str]) -> list[tuple[str, Path]]:
    """(label, path) for every image file under `roots`; a missing root or no images at all is BadInput."""
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


def load_dataset_image(label: str, path: Path, max_pixels: int) -> tuple[DatasetImage, np.ndarray]:
    loaded = load_image(path, max_pixels=max_pixels)
    # A writable copy: some metrics hand arrays to torch, which warns on read-only ones.
    pixels = np.array(apply_orientation(loaded.pixels, loaded.orientation), order="C")
    return DatasetImage(label=label, path=path, content=content_hash(pixels), shape=pixels.shape), pixels
