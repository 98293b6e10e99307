"""Packs what a training run on the lent GPU machine needs into `.device/` (ignored by git, carried).

    .venv/bin/python tools/device_pack.py [--for latent|dirac] [--max-side 256] [--quality 85]

The device tool carries at most 64 MiB with the working tree (about 42 MB of it tracked files,
the current weights among them) and nothing beside the repository, so the photos cannot travel
whole. What travels depends on the model:
- latent (prior and codecs): every training photo as a WebP of at most `--max-side` pixels (the
  latent cache is rebuilt there, on the GPU, in seconds);
- dirac: crops at native resolution (DIRAC learns to undo JPEG at the photo's own scale; resampled
  targets would teach it another scale's texture), `--crop` pixels square, one per photo per pass
  over the training set, until the space left is filled, as JPEG q98 4:4:4: the training photos
  are themselves JPEG q95-98 4:4:4 (../shared/data/README.md), so this adds a residue of the same
  kind and size, far below the q5-90 artefacts DIRAC learns to undo, at half the bytes of lossless
  WebP; the first 12 validation images (what training validates on) as lossless centre crops.
With wheels of enhance (and, for latent models, its plugins; built here: the editable install
needs setuptools 68, which that machine may lack) and what that machine lacks (diffusers, and for
latent models constriction; fetched here for its Python 3.12).
See tools/device_train.sh for the run itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
CARRY_LIMIT = 62 * 2**20  # of the device tool's 64 MiB, a little kept spare
SHARED = ROOT.parent / "shared" / "data"
WHEELS_FROM_INDEX = ["diffusers==0.42.1", "constriction==0.5.0"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pack_photos(source: Path, target: Path, max_side: int, quality: int) -> int:
    from enhance.train.data import find_images

    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in find_images([source]):
        name = str(path.relative_to(source).with_suffix(".webp")).replace("/", "__")
        if not (target / name).exists():
            image = Image.open(path).convert("RGB")
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            image.save(target / name, "WEBP", quality=quality, method=6)
        count += 1
    return count


def pack_crops(source: Path, target: Path, crop: int, budget: int, seed: int = 0) -> int:
    """Random q98 4:4:4 crops, one per photo per pass (photos in a shuffled order), until `budget` bytes."""
    from enhance.train.data import find_images, load_rgb

    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = [p for p in find_images([source]) if min(Image.open(p).size) >= crop]
    used, count = 0, 0
    while True:
        for index in rng.permutation(len(paths)):
            image = load_rgb(paths[index])
            y, x = (int(rng.integers(0, side - crop + 1)) for side in image.shape[:2])
            file = target / f"{count:05d}.jpg"
            Image.fromarray(image[y : y + crop, x : x + crop]).save(file, "JPEG", quality=98, subsampling=0)
            if used + file.stat().st_size > budget:
                file.unlink()
                return count
            used, count = used + file.stat().st_size, count + 1


def pack_centre_crops(source: Path, target: Path, crop: int, limit: int) -> int:
    """The first `limit` validation images, centre-cropped to at most `crop` pixels a side, lossless."""
    from enhance.train.data import find_images

    target.mkdir(parents=True, exist_ok=True)
    paths = find_images([source])[:limit]
    for index, path in enumerate(paths):
        image = Image.open(path)
        width, height = image.size
        left, top = max(0, (width - crop) // 2), max(0, (height - crop) // 2)
        image.crop((left, top, min(width, left + crop), min(height, top + crop))).save(target / f"{index:03d}.png")
    return len(paths)


def tracked_bytes() -> int:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / name.decode()).stat().st_size for name in tracked if name and (ROOT / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def pack_wheels(target: Path, latent: bool) -> None:
    """enhance's wheel and diffusers; for latent models also the plugins' and constriction."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    ours = [str(ROOT)] + ([str(ROOT / "plugins/latent-diffusion"), str(ROOT / "plugins/perco")] if latent else [])
    subprocess.run(pip + ["wheel", "-q", "--no-deps", "-w", str(target), *ours], check=True)
    for folder in ours:
        shutil.rmtree(Path(folder) / "build", ignore_errors=True)
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    subprocess.run(
        pip + ["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target), *(WHEELS_FROM_INDEX if latent else WHEELS_FROM_INDEX[:1])],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--for", dest="model", choices=("latent", "dirac"), default="latent")
    parser.add_argument("--max-side", type=int, default=256, help="latent: longest side of the photos")
    parser.add_argument("--quality", type=int, default=85, help="latent: WebP quality of the photos")
    parser.add_argument("--crop", type=int, default=256, help="dirac: side of the lossless crops")
    args = parser.parse_args()
    out = ROOT / ".device"
    # One model's data at a time: both would not fit.
    shutil.rmtree(out / "data", ignore_errors=True)
    pack_wheels(out / "wheels", latent=args.model == "latent")
    if args.model == "latent":
        for split in ("train", "val"):
            print(split, pack_photos(SHARED / split, out / "data" / split, args.max_side, args.quality), "photos")
    else:
        print("val", pack_centre_crops(SHARED / "val", out / "data" / "val", args.crop, limit=12), "centre crops")
        budget = CARRY_LIMIT - tracked_bytes() - folder_bytes(out)
        print("train", pack_crops(SHARED / "train", out / "data" / "train", args.crop, budget), "crops")
    size, tree = folder_bytes(out), tracked_bytes()
    print(f".device {size / 2**20:.1f} MiB + tracked files {tree / 2**20:.1f} MiB = {(size + tree) / 2**20:.1f} MiB of the 64 MiB the device tool carries")
    if size + tree > CARRY_LIMIT:
        raise SystemExit("too much to carry: lower --max-side or --quality")


if __name__ == "__main__":
    main()
