"""Loading upstream PyTorch checkpoints (torchvision, LPIPS, DISTS, pytorch-fid) strictly.

Files are read with `torch.load(weights_only=True)`, which refuses anything but tensors and
plain containers. Key sets must match exactly: a missing, extra or misshapen tensor is a
WeightsError naming the file, never a silently half-initialised network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import WeightsError
from ..weights import load_exact  # noqa: F401  (the package's one strict loader, used by the metrics)


def load_checkpoint(path: Path | str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for unreadable files
        raise WeightsError(f"{path}: not a loadable PyTorch state dict ({error})") from error
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise WeightsError(f"{path}: expected a flat mapping of names to tensors")
    return dict(state)


def take_unused(
    state: dict[str, torch.Tensor], expected_shapes: Mapping[str, tuple[int, ...]], path: Path | str
) -> dict[str, torch.Tensor]:
    """Checks and removes tensors the file must hold but the metric never uses (classifier heads)."""
    remaining = dict(state)
    for key, shape in expected_shapes.items():
        if key not in remaining:
            raise WeightsError(f"{path}: missing tensor {key!r}; is this the right file?")
        if tuple(remaining[key].shape) != shape:
            raise WeightsError(f"{path}: tensor {key!r} has shape {tuple(remaining[key].shape)}, expected {shape}")
        del remaining[key]
    return remaining
