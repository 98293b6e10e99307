"""Edge padding to a multiple of an autoencoder's factor (edge replication keeps borders from ringing)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad NCHW on the bottom and right up to multiples of `multiple`."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h == 0 and pad_w == 0:
        return images
    return F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
