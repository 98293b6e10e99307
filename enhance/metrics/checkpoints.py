"""Loading upstream PyTorch checkpoints (torchvision, LPIPS, DISTS, pytorch-fid) strictly.

Files are read with `torch.load(weights_only=True)`, which refuses anything but tensors and
plain containers. Key sets must match exactly: a missing, extra or misshapen tensor is a
WeightsError naming the file, never a silently half-initialised network.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsError


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


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """`module.load_state_dict(state, strict=True)` with a WeightsError naming `source`.

    BatchNorm's `num_batches_tracked` counter may be absent: files saved before PyTorch 0.4.1
    lack it, PyTorch itself accepts that, and the counter does nothing in eval mode.
    """
    expected = module.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, value)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(key for key in set(expected) & set(state) if expected[key].shape != state[key].shape)
    if missing or unexpected or misshapen:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if misshapen:
            details.append(f"wrong shape {misshapen[:5]}{' ...' if len(misshapen) > 5 else ''}")
        raise WeightsError(f"{source}: weights do not match {type(module).__name__}: {'; '.join(details)}")
    module.load_state_dict(state, strict=True)
