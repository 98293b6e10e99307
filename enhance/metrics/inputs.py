"""Checks shared by every metric: images are uint8 HxWx3 arrays, pairs have one shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import BadInput
from ..image import checked_rgb


def check_image(image: np.ndarray, what: str) -> np.ndarray:
    checked_rgb(image, what)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise BadInput(f"{what}: the image is empty ({image.shape[0]}x{image.shape[1]})")
    return image


def check_pair(reference: np.ndarray, distorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    check_image(reference, "reference")
    check_image(distorted, "distorted")
    if reference.shape != distorted.shape:
        raise BadInput(
            f"reference is {reference.shape[1]}x{reference.shape[0]} but distorted is "
            f"{distorted.shape[1]}x{distorted.shape[0]}: full-reference metrics need equal sizes"
        )
    return reference, distorted


def check_image_set(images: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    images = list(images)
    if not images:
        raise BadInput(f"{what}: the image set is empty")
    for index, image in enumerate(images):
        check_image(image, f"{what}[{index}]")
    return images


def bt601_luma(image: np.ndarray) -> np.ndarray:
    """Y of BT.601 YCbCr in [16, 235] as float64, unrounded (as BasicSR and the JPEG-restoration papers use it)."""
    rgb = image.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])
