"""Fast modes on a 12 MP JPEG: `enhance thumbnail` and the viewer hook `enhance.open`, in seconds.

    python bench/thumbnail_speed.py [--repeats 5] [--image PNG] [--json bench/results/thumbnail_speed.json]

Makes 4000x3000 JPEGs at quality 85 and 10 (a validation image upscaled, with a little
grain so the file is photo-sized) and a 400x300 one at quality 10, then times:

- `enhance thumbnail -s 256 IN OUT`, the XDG thumbnailer's command, as a file manager runs
  it: a fresh process each time (interpreter start and imports included);
- `enhance.open(path)`, the viewer hook's default, and `enhance.open(path, size=2048)`, a
  screen-sized view, each in a fresh process (the call itself, imports excluded, and the
  whole process);
- once, `enhance.open(path, steps=1, cache=False)` on the 12 MP file: the full-size 1-step
  enhancement a caller gets by naming the steps (skip with --no-full-size).

Medians of --repeats runs; the machine load (1-minute load average) is recorded before and
after, since these CPUs are shared with training jobs. Results are recorded, not asserted;
the issue's target is a 256 px thumbnail of a 12 MP JPEG in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# The validation data lives in ../shared beside the checkout (or beside the worktrees' folder).
DEFAULT_IMAGE = next(
    (path for base in (ROOT.parent, ROOT.parent.parent) if (path := base / "shared/data/val/live1-subset/carnivaldolls.png").is_file()),
    None,
)

OPEN_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import enhance
imported = time.perf_counter()
image = enhance.open(sys.argv[1], **json.loads(sys.argv[2]))
done = time.perf_counter()
print(json.dumps({"call_s": done - imported, "process_s": done - start, "size": image.size,
                  "note": image.info.get("enhance_fast"), "torch": "torch" in sys.modules}))
"""


def make_inputs(source: Path | None, folder: Path) -> dict[str, Path]:
    if source is not None and source.is_file():
        picture = Image.open(source).convert("RGB")
        origin = os.path.relpath(source, ROOT)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import natural_image

        picture = Image.fromarray(natural_image(488, 610))
        origin = "tests/conftest.natural_image(488, 610)"
    big = np.asarray(picture.resize((4000, 3000), Image.Resampling.BICUBIC), np.float32)
    big = Image.fromarray(np.clip(np.rint(big + np.random.default_rng(0).normal(0, 3, big.shape)), 0, 255).astype(np.uint8))
    paths = {}
    for quality in (85, 10):
        paths[f"4000x3000 q{quality}"] = folder / f"big_q{quality}.jpg"
        big.save(paths[f"4000x3000 q{quality}"], quality=quality)
    paths["400x300 q10"] = folder / "small_q10.jpg"
    picture.crop((0, 0, 400, 300)).save(paths["400x300 q10"], quality=10)
    paths["_source"] = origin  # type: ignore[assignment]
    return paths


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{result.stderr}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="picture to upscale (default: a LIVE1 val image)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-full-size", action="store_true", help="skip the full-size 1-step enhancement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        env["ENHANCE_CACHE"] = str(folder / "cache")  # a cold cache: nothing is read back
        inputs = make_inputs(args.image, folder)
        source = inputs.pop("_source")
        thumbnail_cmd = [sys.executable, "-c", "from enhance.cli import main; main()", "thumbnail", "-s", str(args.size)]
        thumbnails = {}
        for label, path in inputs.items():
            times = [timed(thumbnail_cmd + [str(path), str(folder / "t.png")], env)[0] for _ in range(args.repeats)]
            with Image.open(folder / "t.png") as out:
                size = out.size
            thumbnails[label] = {"median_s": round(statistics.median(times), 3), "runs_s": [round(t, 3) for t in times],
                                 "thumbnail": f"{size[0]}x{size[1]}", "file_bytes": path.stat().st_size}
            print(label, "thumbnail", thumbnails[label], flush=True)

        viewer = {}
        cases = [(label, options) for label in ("4000x3000 q85", "4000x3000 q10") for options in ({}, {"size": 2048})]
        if not args.no_full_size:
            cases.append(("4000x3000 q10", {"steps": 1, "cache": False}))
        for label, options in cases:
            repeats = 1 if "steps" in options else args.repeats
            runs = [json.loads(timed([sys.executable, "-c", OPEN_SCRIPT, str(inputs[label]), json.dumps(options)], env)[1])
                    for _ in range(repeats)]
            key = f"{label} open({', '.join(f'{k}={v!r}' for k, v in options.items())})"
            viewer[key] = {
                "call_median_s": round(statistics.median(r["call_s"] for r in runs), 3),
                "process_median_s": round(statistics.median(r["process_s"] for r in runs), 3),
                "runs": len(runs), "size": "x".join(map(str, runs[0]["size"])), "note": runs[0]["note"],
                "torch_imported": runs[0]["torch"],
            }
            print(key, viewer[key], flush=True)

    result = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "source_image": source,
        "thumbnail_size": args.size,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "thumbnail": thumbnails,
        "viewer_open": viewer,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
