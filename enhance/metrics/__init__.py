"""Image quality metrics. Every image is a uint8 HxWx3 RGB numpy array.

Tables for a compare tool:

- `FULL_REFERENCE[name](reference, distorted) -> float`: per-image metrics that need no
  downloaded weights.
- `LEARNED_FULL_REFERENCE[name](reference, distorted) -> float`: LPIPS and DISTS, whose
  backbones come through weights.lock (fetched on first use unless ENHANCE_OFFLINE=1).
- `DISTRIBUTION[name](originals, outputs) -> float`: set-level realism metrics taking two lists
  of images (SWD needs no weights; FID/KID use the Inception from weights.lock).
- `GOAL[name]`: "max" or "min" for the better direction of every metric above, or the
  ideal value itself (1.0 for hf-energy-ratio, where less is blurrier and more is noisier).

Rate–quality curves are compared with `bd_rate` / `bd_metric` (enhance.metrics.bdrate).
"""

from .bdrate import bd_metric, bd_rate
from .detail import hf_energy_ratio
from .dists_vgg import dists
from .lpips_alex import lpips
from .multiscale_ssim import ms_ssim
from .patch_fid import fid, kid
from .psnr import psnr_b, psnr_rgb, psnr_y
from .sliced_wasserstein import swd
from .ssimulacra import ssimulacra2

FULL_REFERENCE = {
    "psnr-rgb": psnr_rgb,
    "psnr-y": psnr_y,
    "psnr-b": psnr_b,
    "ms-ssim-rgb": ms_ssim,
    "ssimulacra2": ssimulacra2,
    "hf-energy-ratio": hf_energy_ratio,
}

LEARNED_FULL_REFERENCE = {
    "lpips": lpips,
    "dists": dists,
}

DISTRIBUTION = {
    "swd": swd,
    "fid": fid,
    "kid": kid,
}

GOAL: dict[str, str | float] = {
    "psnr-rgb": "max",
    "psnr-y": "max",
    "psnr-b": "max",
    "ms-ssim-rgb": "max",
    "ssimulacra2": "max",
    "hf-energy-ratio": 1.0,
    "lpips": "min",
    "dists": "min",
    "swd": "min",
    "fid": "min",
    "kid": "min",
}

__all__ = [
    "DISTRIBUTION",
    "FULL_REFERENCE",
    "GOAL",
    "LEARNED_FULL_REFERENCE",
    "bd_metric",
    "bd_rate",
    "dists",
    "fid",
    "hf_energy_ratio",
    "kid",
    "lpips",
    "ms_ssim",
    "psnr_b",
    "psnr_rgb",
    "psnr_y",
    "ssimulacra2",
    "swd",
]
