"""LPIPS v0.1 with the AlexNet trunk (Zhang et al., CVPR 2018), in plain torch.

Structure, constants and file layout follow richzhang/PerceptualSimilarity (pip `lpips`
0.1.4), `LPIPS(net='alex', version='0.1')`:

- input in [-1, 1] (uint8 / 127.5 - 1), then the ScalingLayer (x - shift) / scale with
  shift = (-0.030, -0.088, -0.188), scale = (0.458, 0.448, 0.450);
- torchvision AlexNet `features` tapped after the ReLUs at indices 1, 4, 7, 9, 11
  (64, 192, 384, 256, 256 channels);
- each tap unit-normalised over channels (eps 1e-10), squared difference, a learned 1x1
  conv to one channel (no bias), spatial mean, sum over the five taps.

Weights (weights.lock bundle `lpips-alex`): torchvision's `alexnet-owt-7be5be79.pth` (the
full classifier included; its head is checked and dropped) and LPIPS's `v0.1/alex.pth`
(keys `lin{0..4}.model.1.weight`). Both load strictly with `torch.load(weights_only=True)`.

Checked during development (not in the test suite, which cannot install torchvision): the
lin-layer file as shipped in the `lpips` 0.1.4 wheel (its SHA-256 is in weights.lock) loads
strictly, and with identical random trunk weights this module gives exactly the distance of
`lpips.LPIPS(net='alex', version='0.1')` built on torchvision's `alexnet()`. Not verifiable offline: the
AlexNet file itself (only its hash prefix is published, in its name), hence the standard
LPIPS numbers, which follow once the real trunk is in place.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import weights
from ..errors import BadInput
from .checkpoints import load_checkpoint, load_exact, take_unused
from .inputs import check_pair

BUNDLE = "lpips-alex"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LINEAR_FILE = "v0.1/alex.pth"
TAP_CHANNELS = (64, 192, 384, 256, 256)
# Smallest side for which every AlexNet tap is at least 1x1.
MIN_SIDE = 31

ALEXNET_CLASSIFIER_SHAPES = {
    "classifier.1.weight": (4096, 9216),
    "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096),
    "classifier.4.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


class AlexNetFeatures(nn.Module):
    """torchvision `alexnet().features` up to the last ReLU, same module indices."""

    TAPS = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.TAPS:
                taps.append(x)
        return taps


class LinearHead(nn.Module):
    """LPIPS NetLinLayer. Slot 0 held a dropout used only in training; it is kept as an
    identity so the conv's key stays `model.1.weight`, as in the published files."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        self.lin0, self.lin1, self.lin2, self.lin3, self.lin4 = (LinearHead(c) for c in TAP_CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances (N,) between batches in [-1, 1]."""
        heads = (self.lin0, self.lin1, self.lin2, self.lin3, self.lin4)
        taps_x = self.net((x - self.shift) / self.scale)
        taps_y = self.net((y - self.shift) / self.scale)
        total = 0.0
        for head, tap_x, tap_y in zip(heads, taps_x, taps_y, strict=True):
            unit_x = tap_x / (torch.sqrt(torch.sum(tap_x**2, dim=1, keepdim=True)) + 1e-10)
            unit_y = tap_y / (torch.sqrt(torch.sum(tap_y**2, dim=1, keepdim=True)) + 1e-10)
            total = total + head((unit_x - unit_y) ** 2).mean(dim=(2, 3))
        return total.view(-1)

    @classmethod
    def from_files(cls, *, alexnet: Path | str, linear: Path | str) -> LPIPS:
        model = cls()
        trunk = take_unused(load_checkpoint(alexnet), ALEXNET_CLASSIFIER_SHAPES, alexnet)
        state = {f"net.{key}": value for key, value in trunk.items()}
        state.update(load_checkpoint(linear))
        load_exact(model, state, f"{alexnet} + {linear}")
        return model


@functools.cache
def default_lpips() -> LPIPS:
    """The published LPIPS-alex v0.1, from weights.lock (downloaded on first use if allowed)."""
    return LPIPS.from_files(alexnet=weights.resolve(BUNDLE, ALEXNET_FILE), linear=weights.resolve(BUNDLE, LINEAR_FILE))


def to_signed_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 to a 1x3xHxW float tensor in [-1, 1]."""
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1.0


def lpips(reference: np.ndarray, distorted: np.ndarray, *, model: LPIPS | None = None) -> float:
    """LPIPS distance: 0 for identical images, larger is more different (typically < 1)."""
    reference, distorted = check_pair(reference, distorted)
    if min(reference.shape[:2]) < MIN_SIDE:
        raise BadInput(
            f"LPIPS (AlexNet) needs both sides >= {MIN_SIDE} px; got {reference.shape[1]}x{reference.shape[0]}"
        )
    model = model or default_lpips()
    with torch.no_grad():
        return float(model(to_signed_tensor(reference), to_signed_tensor(distorted))[0])
