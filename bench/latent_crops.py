"""Side-by-side crops of full generative codecs and a base codec at about the same rate, to look at.

    python bench/latent_crops.py IMAGE... --panel latent-diffusion:4:0 --panel latent-diffusion:4:4 \
        [--panel perco:7] [--match avif] [--bundle latent-diffusion=DIR] [--crop 160] [--zoom 2] \
        --out bench/results/latent_crops.jpg

Each `--panel` is CODEC:RATE[:STEPS] (STEPS: the codec's default when left out), encoded and
decoded through enhance's public API (`encode_bitstream`/`decode_bitstream`, the CLI's road),
seed 0, and labelled with its bits per pixel. `--match CODEC` adds that base codec at the
quality whose file is nearest in size to the first panel's. One row per image, every panel cut
to the original's most detailed window and enlarged without interpolation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from enhance import registry
from enhance.api import decode_bitstream, encode_bitstream, load_display_pixels

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crop_rows import row_image, save_sheet  # noqa: E402
from latent_codecs import BASE_QUALITIES, bundled_factory  # noqa: E402


def parse_panel(text: str) -> tuple[str, int, int | None]:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise SystemExit(f"--panel {text!r}: expected CODEC:RATE[:STEPS]")
    try:
        return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise SystemExit(f"--panel {text!r}: RATE and STEPS are integers") from None


def bpp(data: bytes, pixels: np.ndarray) -> float:
    return 8 * len(data) / (pixels.shape[0] * pixels.shape[1])


def matched(codec: str, pixels: np.ndarray, target_bytes: int) -> tuple[str, np.ndarray]:
    """`codec` at the quality (0..100) whose file size is nearest `target_bytes`."""
    sizes = {quality: encode_bitstream(pixels, codec, quality) for quality in range(0, 101, 2)}
    quality = min(sizes, key=lambda q: abs(len(sizes[q]) - target_bytes))
    data = sizes[quality]
    return f"{codec} q{quality} {bpp(data, pixels):.3f} bpp", decode_bitstream(data)


def panels_for(path: Path, panels, match: str | None) -> list[tuple[str, np.ndarray]]:
    pixels = load_display_pixels(path)
    shown = [("original", pixels)]
    first_bytes = None
    for codec, rate, steps in panels:
        data = encode_bitstream(pixels, codec, rate)
        first_bytes = first_bytes or len(data)
        label = f"{codec} {rate}" + ("" if steps is None else f", {steps} steps") + f" {bpp(data, pixels):.3f} bpp"
        shown.append((label, decode_bitstream(data, steps=steps, seed=0)))
        print(f"{path.name}: {label}", file=sys.stderr, flush=True)
    if match is not None:
        shown.append(matched(match, pixels, first_bytes))
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--panel", action="append", required=True, help="CODEC:RATE[:STEPS] (repeatable)")
    parser.add_argument("--match", choices=sorted(BASE_QUALITIES), default=None, help="a base codec at the first panel's file size")
    parser.add_argument("--bundle", action="append", default=[], help="NAME=DIR: a full codec's bundle in place of its shipped one")
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--zoom", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    panels = [parse_panel(text) for text in args.panel]
    installed = registry.factories("full_codec")
    injected = dict(installed)
    for value in args.bundle:
        name, _, directory = value.partition("=")
        if name not in installed or not directory:
            raise SystemExit(f"--bundle {value!r}: expected NAME=DIR with NAME one of {', '.join(sorted(installed))}")
        injected[name] = bundled_factory(installed[name], Path(directory).resolve())
    with registry.use_plugins(full_codecs=injected):
        rows = [row_image(panels_for(path, panels, args.match), args.crop, args.zoom) for path in args.images]
    save_sheet(rows, args.out)


if __name__ == "__main__":
    main()
