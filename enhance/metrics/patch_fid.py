"""FID/256 and KID/256 on image patches, as in HiFiC (Mentzer et al., NeurIPS 2020).

A few high-resolution images give too few samples for a 2048-d Gaussian, so each image is cut
into patches and every patch counts as a sample. The patching is HiFiC's, as implemented in
Meta's `neuralcompression.metrics.update_patch_fid` (used by MS-ILLM and later work): the
image is tiled with non-overlapping 256x256 patches from its top-left corner, then, if both
sides are at least 1.5 x 256, tiled again starting at (128, 128). Those two grids overlap by
half a patch ("half-overlapping"); partial patches at the right and bottom edges are dropped.

Features are pytorch-fid's Inception pool3 (see `inception.py`), in float64. Then:

- FID: ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), with unbiased covariances, scipy's
  sqrtm, an eps = 1e-6 ridge when the product is singular, and the imaginary part dropped
  when negligible: pytorch-fid's `calculate_frechet_distance`.
- KID: the unbiased MMD^2 estimate with the cubic polynomial kernel k(x, y) =
  (x.y / d + 1)^3, averaged over `subsets` random subsets of min(n1, n2, 1000) samples per
  set: clean-fid's `kernel_distance` and torch-fidelity's defaults (100 subsets of <= 1000),
  with a seeded generator. Reported in raw units (papers often print KID x 10^3).

Both take two lists of uint8 images (originals, outputs); the lists may differ in length.
`features=` swaps the Inception for any callable mapping (N, H, W, 3) uint8 patches to
(N, D) features, which is how the tests exercise the statistics without the real network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import linalg

from ..errors import BadInput
from .inception import default_inception_features
from .inputs import check_image_set

PATCH_SIZE = 256
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
SINGULAR_RIDGE = 1e-6

FeatureExtractor = Callable[[np.ndarray], np.ndarray]


def hific_patches(image: np.ndarray, size: int = PATCH_SIZE) -> list[np.ndarray]:
    """The size x size patches of one HxWx3 image: a grid from (0, 0) and, when the image is at
    least 1.5 x size on both sides, a second grid from (size/2, size/2)."""
    height, width = image.shape[:2]
    offsets = [0]
    if height >= 1.5 * size and width >= 1.5 * size:
        offsets.append(size // 2)
    patches = []
    for offset in offsets:
        for top in range(offset, height - size + 1, size):
            for left in range(offset, width - size + 1, size):
                patches.append(image[top : top + size, left : left + size])
    return patches


def _patch_stack(images: Sequence[np.ndarray], what: str, size: int) -> np.ndarray:
    patches = [patch for image in check_image_set(images, what) for patch in hific_patches(image, size)]
    if not patches:
        raise BadInput(f"{what}: no image is at least {size}x{size}, so there are no patches to score")
    return np.stack(patches)


def _features(images: Sequence[np.ndarray], what: str, size: int, features: FeatureExtractor | None) -> np.ndarray:
    extractor = features or default_inception_features()
    return np.asarray(extractor(_patch_stack(images, what, size)), dtype=np.float64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (pytorch-fid's)."""
    if len(features_a) < 2 or len(features_b) < 2:
        raise BadInput("FID needs at least 2 samples (patches) per set")
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(features_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(features_b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():
        ridge = np.eye(len(cov_a)) * SINGULAR_RIDGE
        root = linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise FloatingPointError(f"FID: sqrtm has an imaginary part of {np.max(np.abs(root.imag)):.3g}")
        root = root.real
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root))


def kernel_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> float:
    """Mean over random subsets of the unbiased MMD^2 with the cubic polynomial kernel."""
    size = min(len(features_a), len(features_b), subset_size)
    if size < 2:
        raise BadInput("KID needs at least 2 samples (patches) per set")
    dimension = features_a.shape[1]
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(subsets):
        x = features_b[rng.choice(len(features_b), size, replace=False)]
        y = features_a[rng.choice(len(features_a), size, replace=False)]
        within = (x @ x.T / dimension + 1) ** 3 + (y @ y.T / dimension + 1) ** 3
        across = (x @ y.T / dimension + 1) ** 3
        total += (within.sum() - np.trace(within)) / (size - 1) - across.sum() * 2 / size
    return float(total / subsets / size)


def fid(
    originals: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    *,
    patch_size: int = PATCH_SIZE,
    features: FeatureExtractor | None = None,
) -> float:
    """FID/256 between the patch sets of two image lists (0 for identical sets)."""
    return frechet_distance(
        _features(originals, "originals", patch_size, features), _features(outputs, "outputs", patch_size, features)
    )


def kid(
    originals: Sequence[np.ndarray],
    outputs: Sequence[np.ndarray],
    *,
    patch_size: int = PATCH_SIZE,
    features: FeatureExtractor | None = None,
    seed: int = 0,
) -> float:
    """KID/256 between the patch sets of two image lists (about 0 for identical sets)."""
    return kernel_distance(
        _features(originals, "originals", patch_size, features),
        _features(outputs, "outputs", patch_size, features),
        seed=seed,
    )
