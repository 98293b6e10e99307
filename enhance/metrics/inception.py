"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph as ported by pytorch-fid), in plain torch.

Module names are those of torchvision's `Inception3(num_classes=1008, aux_logits=False)`,
which is what pytorch-fid builds and loads `pt_inception-2015-12-05-6726825d.pth` into
strictly, so that file loads here strictly too. The FID-specific blocks follow pytorch-fid's
`FIDInceptionA/C/E_1/E_2`: their 3x3 average pools exclude the zero padding from the mean
(count_include_pad=False), and the last block (Mixed_7c) max-pools instead.

`InceptionFeatures` reproduces pytorch-fid's `InceptionV3([3])` forward for images given as
uint8: x / 255, bilinear resize to 299x299 (align_corners=False, no antialias), 2x - 1, then
the blocks up to the global average pool: 2048 features per image.

Checked during development (not in the test suite, which cannot install torchvision): the
key set and shapes equal torchvision's `Inception3(num_classes=1008, aux_logits=False)`, and
with identical random weights the features equal those of pytorch-fid 0.3.0's `InceptionV3`
exactly. Not verifiable offline: the weights file itself (hash prefix
from its name only) and hence published FID values.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import weights
from .checkpoints import load_checkpoint, load_exact

BUNDLE = "fid-inception"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
INPUT_SIZE = 299
FEATURES = 2048


class BasicConv2d(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, **conv) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels_in, channels_out, bias=False, **conv)
        self.bn = nn.BatchNorm2d(channels_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _average_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves padded zeros out of the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, channels_in: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(channels_in, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(channels_in, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(channels_in, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_average_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(channels_in, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, channels_in: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(channels_in, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(channels_in, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(channels_in, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(channels_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_average_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    def __init__(self, channels_in: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(channels_in, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(channels_in, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """`max_pool=False` is pytorch-fid's FIDInceptionE_1, `True` its FIDInceptionE_2 (a max
    pool where the paper has an average pool: a quirk of the TensorFlow graph, kept)."""

    def __init__(self, channels_in: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(channels_in, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(channels_in, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(channels_in, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(channels_in, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _average_pool_without_padding(x)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        # The 1008-way classifier is unused for FID but part of the file.
        self.fc = nn.Linear(FEATURES, 1008)
        self.eval()

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        """2048-d pool3 features of a batch already resized to 299 and scaled to [-1, 1]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (
            self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
            self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c,
        ):  # fmt: skip
            x = block(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    @classmethod
    def from_file(cls, path: Path | str) -> FIDInceptionV3:
        model = cls()
        load_exact(model, load_checkpoint(path), str(path))
        return model


class InceptionFeatures:
    """Callable: uint8 (N, H, W, 3) images to (N, 2048) float64 pool3 features, as pytorch-fid."""

    def __init__(self, *, model: FIDInceptionV3, batch_size: int = 16) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, images: np.ndarray) -> np.ndarray:
        features = []
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(images[start : start + self.batch_size]))
                x = batch.permute(0, 3, 1, 2).float() / 255.0
                x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
                features.append(self.model.pool3(2 * x - 1).double().numpy())
        return np.concatenate(features) if features else np.zeros((0, FEATURES))


@functools.cache
def default_inception_features() -> InceptionFeatures:
    """pytorch-fid's Inception weights from weights.lock (downloaded on first use if allowed)."""
    return InceptionFeatures(model=FIDInceptionV3.from_file(weights.resolve(BUNDLE, WEIGHTS_FILE)))
