"""Where DIRAC's realism gap lies in the finest band: SWD after swapping parts of it for the original's.

    python bench/dirac_band_oracle.py [--bundle DIR] [--data ../shared/data/val] [--quality 20] \
        [--steps N] [--json FILE]

A diagnostic, not a method: every row but `jpeg` and `dirac` uses the original, which a decoder
never has. Each row replaces the finest Laplacian band of DIRAC's output (N steps, default the
model's realism end) and reports SWD per pyramid level (finest first), as bench/dirac_jpeg.py does:

- `luma-of-original` / `chroma-of-original`: the band's luma (Y) or chroma (Cb, Cr) taken from the
  original, the rest from DIRAC: how much of the gap is the structure of each;
- `energy-of-original`: DIRAC's band rescaled to the original's local RMS (8x8 windows): how much is
  only where the texture is and how strong, not what it looks like;
- `chroma-of-jpeg` / `no-chroma`: the band's chroma from the JPEG, or none: whether DIRAC's own chroma
  texture helps at all.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from enhance.enhance_one import CodedImage
from enhance.enhancers import bundle_directory, load_dirac
from enhance.image import find_images
from enhance.metrics.pyramid import pyr_down, pyr_up
from enhance.metrics.sliced_wasserstein import swd_by_level
from enhance.train.adversarial import YCBCR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dirac_jpeg import encode_jpeg  # noqa: E402

TO_YCBCR = np.array(YCBCR)
TO_RGB = np.linalg.inv(TO_YCBCR)
ROWS = ("jpeg", "dirac", "luma-of-original", "chroma-of-original", "energy-of-original", "chroma-of-jpeg", "no-chroma")


def split_finest(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(finest band, the rest) of an H x W x 3 image, as 3 x H x W YCbCr float planes summing to it."""
    planes = np.einsum("ij,hwj->ihw", TO_YCBCR, image.astype(np.float64))
    band = planes - pyr_up(pyr_down(planes), planes.shape[-2:])
    return band, planes - band


def to_image(planes: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.einsum("ij,jhw->hwi", TO_RGB, planes)), 0, 255).astype(np.uint8)


def local_rms(band: np.ndarray) -> np.ndarray:
    return np.sqrt(uniform_filter((band**2).sum(axis=0), 8) + 1e-6)


def oracle_rows(original: np.ndarray, decoded: np.ndarray, output: np.ndarray) -> dict[str, np.ndarray]:
    band, rest = split_finest(output)
    original_band, _ = split_finest(original)
    jpeg_band, _ = split_finest(decoded)
    with_chroma = lambda luma, chroma: to_image(rest + np.concatenate([luma[:1], chroma[1:]]))  # noqa: E731
    return {
        "jpeg": decoded,
        "dirac": output,
        "luma-of-original": with_chroma(original_band, band),
        "chroma-of-original": with_chroma(band, original_band),
        "energy-of-original": to_image(rest + band * (local_rms(original_band) / local_rms(band))),
        "chroma-of-jpeg": with_chroma(band, jpeg_band),
        "no-chroma": with_chroma(band, np.zeros_like(band)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("../shared/data/val")])
    parser.add_argument("--quality", type=int, default=20)
    parser.add_argument("--steps", type=int, default=None, help="DIRAC steps (default: the model's realism end)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    bundle = args.bundle or bundle_directory("jpeg")
    enhancer = load_dirac("jpeg", bundle=bundle)
    steps = args.steps or enhancer.pipeline.config.default_steps
    originals, outputs = [], {row: [] for row in ROWS}
    for path in find_images(args.data):
        image = Image.open(path)
        image = image if image.mode == "L" else image.convert("RGB")
        data = encode_jpeg(image, args.quality)
        original = np.asarray(image.convert("RGB"))
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        output = enhancer.enhance_stops(decoded, rate=CodedImage.read(data).rate, stops=[steps])[steps]
        originals.append(original)
        for row, result in oracle_rows(original, decoded, output).items():
            outputs[row].append(result)
    report = {"command": "python " + " ".join(sys.argv), "bundle": str(bundle), "quality": args.quality, "steps": steps, "rows": {}}
    for row in ROWS:
        levels = [round(float(v), 2) for v in swd_by_level(originals, outputs[row])]
        report["rows"][row] = {"swd": round(float(np.mean(levels)), 2), "swd-by-level": levels}
        print(f"{row:20s} SWD {np.mean(levels):6.2f}  by level " + " / ".join(f"{v:.1f}" for v in levels), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
