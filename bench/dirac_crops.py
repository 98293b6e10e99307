"""Side-by-side crops for looking at DIRAC's output: original, JPEG, 1 step and the realism end.

    python bench/dirac_crops.py [--bundle DIR] [--quality 10] [--crop 128] [--zoom 2] \
        [--out weights/dirac-jpeg/crops-q10.png] IMAGE...

One row per image, cropped to its most detailed window (the same window `enhance compare` picks)
and enlarged without interpolation, so that texture, noise and blocking can be told apart by eye.
The realism end is the model's default step count; seed 0.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from enhance.codecs.pillow import JpegCodec
from enhance.enhance_one import CodedImage
from enhance.enhancers import bundle_directory, load_dirac

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop_rows import row_image, save_sheet  # noqa: E402


def panels_for(path: Path, enhancer, quality: int) -> list[tuple[str, np.ndarray]]:
    image = Image.open(path)
    pixels = np.asarray(image.convert("RGB"))
    codec = JpegCodec()
    data = codec.encode_greyscale(np.asarray(image), quality) if image.mode == "L" else codec.encode(pixels, quality)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    realism = enhancer.pipeline.config.default_steps
    outputs = enhancer.enhance_stops(decoded, rate=CodedImage.read(data).rate, stops=sorted({1, realism}))
    return [("original", pixels), (f"JPEG q{quality}", decoded), ("DIRAC 1 step", outputs[1]), (f"DIRAC {realism} steps", outputs[realism])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--quality", type=int, default=10)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--zoom", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    enhancer = load_dirac("jpeg", bundle=args.bundle or bundle_directory("jpeg"))
    rows = [row_image(panels_for(path, enhancer, args.quality), args.crop, args.zoom) for path in args.images]
    save_sheet(rows, args.out)


if __name__ == "__main__":
    main()
