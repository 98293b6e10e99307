"""DISTS (Ding, Ma, Wang & Simoncelli, TPAMI 2020), in plain torch.

Structure and constants follow the authors' `DISTS_pytorch` package (DISTS_pt.py):

- input in [0, 1], normalised with the ImageNet mean (0.485, 0.456, 0.406) and std
  (0.229, 0.224, 0.225) for the network; the raw input is also the first "stage";
- torchvision VGG16 `features[0:30]` with each max pool (indices 4, 9, 16, 23) replaced by
  L2 pooling: sqrt(conv(x^2, g) + 1e-12) with g the normalised outer product of
  hanning(5)[1:-1] = (0.5, 1, 0.5), stride 2, padding 1, per channel;
- stages end after the ReLUs at indices 3, 8, 15, 22, 29 (64, 128, 256, 512, 512 channels);
- per channel, texture term (2 mx my + c1) / (mx^2 + my^2 + c1) and structure term
  (2 cov + c2) / (vx + vy + c2) over the whole map (c1 = c2 = 1e-6), weighted by the learned
  alpha and beta (1475 each, normalised by their joint sum); DISTS = 1 - sum.

No resizing is done: scores are for the image at its own size, as piq's DISTS and the
DISTS_pytorch 0.1 wheel's `prepare_image` default give them (the authors' current GitHub
script instead shrinks a shorter side above 256 px to 256 first; resize before calling to
match that). Weights (weights.lock bundle `dists`): torchvision's `vgg16-397923af.pth`
(classifier head checked and dropped) and DISTS's `weights.pt` (`alpha`, `beta`).

Checked during development (not in the test suite, which cannot install torchvision):
`weights.pt` as shipped in the DISTS_pytorch 0.1 wheel (SHA-256 in weights.lock) loads
strictly, and with identical random VGG weights this module gives exactly the score of
`DISTS_pytorch.DISTS` built on torchvision's `vgg16()`. Not verifiable offline: the VGG16 file (hash prefix
only), hence the published DISTS numbers.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights
from .checkpoints import load_checkpoint, load_exact, take_unused
from .inputs import check_pair

BUNDLE = "dists"
VGG16_FILE = "vgg16-397923af.pth"
ALPHA_BETA_FILE = "weights.pt"
STAGE_CHANNELS = (3, 64, 128, 256, 512, 512)
STAGE_ENDS = (3, 8, 15, 22, 29)
L2_POOL_INDICES = (4, 9, 16, 23)
# VGG16 convolutions (index: in, out); every other index up to 29 is a ReLU or a pooling.
VGG16_CONVS = {
    0: (3, 64), 2: (64, 64),
    5: (64, 128), 7: (128, 128),
    10: (128, 256), 12: (256, 256), 14: (256, 256),
    17: (256, 512), 19: (512, 512), 21: (512, 512),
    24: (512, 512), 26: (512, 512), 28: (512, 512),
}  # fmt: skip
VGG16_CLASSIFIER_SHAPES = {
    "classifier.0.weight": (4096, 25088),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


class L2Pooling(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5])
        window = taps[:, None] * taps[None, :]
        window = window / window.sum()
        self.register_buffer("window", window.expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.conv2d(x**2, self.window, stride=2, padding=1, groups=x.shape[1])
        return torch.sqrt(pooled + 1e-12)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 3
    for index in range(30):
        if index in VGG16_CONVS:
            channels_in, channels = VGG16_CONVS[index]
            layers.append(nn.Conv2d(channels_in, channels, kernel_size=3, padding=1))
        elif index in L2_POOL_INDICES:
            layers.append(L2Pooling(channels))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DISTS(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg16_features()
        self.alpha = nn.Parameter(torch.full((1, sum(STAGE_CHANNELS), 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, sum(STAGE_CHANNELS), 1, 1), 0.1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        h = (x - self.mean) / self.std
        for index, layer in enumerate(self.features):
            h = layer(h)
            if index in STAGE_ENDS:
                outputs.append(h)
        return outputs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distances (N,) between batches in [0, 1]."""
        c1 = c2 = 1e-6
        total_weight = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total_weight, STAGE_CHANNELS, dim=1)
        betas = torch.split(self.beta / total_weight, STAGE_CHANNELS, dim=1)
        texture = structure = 0.0
        for alpha, beta, fx, fy in zip(alphas, betas, self.stages(x), self.stages(y), strict=True):
            mean_x = fx.mean(dim=(2, 3), keepdim=True)
            mean_y = fy.mean(dim=(2, 3), keepdim=True)
            texture = texture + (alpha * (2 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1)).sum(1, keepdim=True)
            var_x = ((fx - mean_x) ** 2).mean(dim=(2, 3), keepdim=True)
            var_y = ((fy - mean_y) ** 2).mean(dim=(2, 3), keepdim=True)
            cov = (fx * fy).mean(dim=(2, 3), keepdim=True) - mean_x * mean_y
            structure = structure + (beta * (2 * cov + c2) / (var_x + var_y + c2)).sum(1, keepdim=True)
        return (1 - (texture + structure)).view(-1)

    @classmethod
    def from_files(cls, *, vgg16: Path | str, alpha_beta: Path | str) -> DISTS:
        model = cls()
        state = take_unused(load_checkpoint(vgg16), VGG16_CLASSIFIER_SHAPES, vgg16)
        state.update(load_checkpoint(alpha_beta))
        load_exact(model, state, f"{vgg16} + {alpha_beta}")
        return model


@functools.cache
def default_dists() -> DISTS:
    """The published DISTS, from weights.lock (downloaded on first use if allowed)."""
    return DISTS.from_files(
        vgg16=weights.resolve(BUNDLE, VGG16_FILE), alpha_beta=weights.resolve(BUNDLE, ALPHA_BETA_FILE)
    )


def to_unit_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 to a 1x3xHxW float tensor in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def dists(reference: np.ndarray, distorted: np.ndarray, *, model: DISTS | None = None) -> float:
    """DISTS distance: 0 for identical images, larger is more different."""
    reference, distorted = check_pair(reference, distorted)
    model = model or default_dists()
    with torch.no_grad():
        return float(model(to_unit_tensor(reference), to_unit_tensor(distorted))[0])
