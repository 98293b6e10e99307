"""Peak memory of `enhance run` on one 24-megapixel JPEG, at the default tile and 1 step.

    python bench/peak_memory.py [--bundle DIR] [--width 6000 --height 4000] [--tile N] [--json out.json]

The default bundle is the shipped JPEG model (weights/dirac-jpeg). The
JPEG is synthetic (gradients, edges and noise, quality 75, 4:2:0). Each measurement is
a child process whose peak resident set size comes from wait4(): one runs the whole
`enhance run` (decode, enhance, consistency projection, PNG encode), one only loads the
model, so the difference is what the image itself costs. Results are recorded, not
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from enhance.enhancers import bundle_directory

RUN_CLI = "from enhance.cli import main; main()"
LOAD_ONLY = "import sys; from enhance.enhance_one import load_enhancer; load_enhancer('jpeg', model=sys.argv[1], device=sys.argv[2] or None)"


def synthetic_jpeg(path: Path, height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    image = np.empty((height, width, 3), np.uint8)
    for channel, (fy, fx) in enumerate([(97.0, 131.0), (173.0, 59.0), (41.0, 211.0)]):
        plane = 128 + 70 * np.sin(x / fx + y / fy) + 25 * (((x // 37 + y // 53) % 2) - 0.5)
        plane += rng.normal(0, 6, size=(height, width)).astype(np.float32)
        image[..., channel] = np.clip(plane, 0, 255)
    Image.fromarray(image).save(path, "JPEG", quality=75, subsampling=2)


def peak_rss(command: list[str]) -> tuple[int, float]:
    """(peak resident set size in bytes, wall seconds) of a child process."""
    start = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed with {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss * 1024, time.perf_counter() - start  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: the shipped JPEG model)")
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--tile", type=int, default=None, help="tile size (default: the enhancer's)")
    parser.add_argument("--device", default="")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        bundle = args.bundle or bundle_directory("jpeg")
        photo = scratch / "photo.jpg"
        synthetic_jpeg(photo, args.height, args.width)
        load_bytes, _ = peak_rss([sys.executable, "-c", LOAD_ONLY, str(bundle), args.device])
        command = [sys.executable, "-c", RUN_CLI, "run", str(photo), "-o", str(scratch / "out"), "--model", str(bundle), "--steps", "1", "--consistent"]
        if args.tile:
            command += ["--tile", str(args.tile)]
        if args.device:
            command += ["--device", args.device]
        run_bytes, seconds = peak_rss(command)

    megapixels = args.width * args.height / 1e6
    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "bundle": str(args.bundle or "weights/dirac-jpeg"),
        "image": f"{args.width}x{args.height} ({megapixels:.1f} MP) JPEG q75 4:2:0",
        "tile": args.tile or "default",
        "steps": 1,
        "peak_rss_gib": round(run_bytes / 2**30, 2),
        "model_loaded_rss_gib": round(load_bytes / 2**30, 2),
        "seconds": round(seconds, 1),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    print(
        f"\nPeak memory, `enhance run` on a {megapixels:.0f} MP JPEG, 1 step, tile {result['tile']}: "
        f"{result['peak_rss_gib']} GiB RSS (model loaded alone: {result['model_loaded_rss_gib']} GiB), {result['seconds']} s."
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
