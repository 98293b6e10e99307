"""Packs what a training run on the lent GPU machine needs into `.device/` (ignored by git, carried).

    .venv/bin/python tools/device_pack.py [--max-side 256] [--quality 85]

The device tool carries at most 64 MiB with the working tree (about 42 MB of it tracked files,
the current weights among them) and nothing beside the repository, so the training photos
travel as WebP files of at most `--max-side` pixels (the latent cache is rebuilt there, on the
GPU, in seconds), with wheels of enhance, its plugins (built here: the editable install needs
setuptools 68, which that machine may lack) and the two packages it lacks (diffusers, constriction;
fetched here for its Python 3.12).
See tools/device_train.sh for the run itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
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


def pack_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    ours = [str(ROOT), str(ROOT / "plugins/latent-diffusion"), str(ROOT / "plugins/perco")]
    subprocess.run(pip + ["wheel", "-q", "--no-deps", "-w", str(target), *ours], check=True)
    for folder in ours:
        shutil.rmtree(Path(folder) / "build", ignore_errors=True)
    platforms = [flag for platform in PLATFORMS for flag in ("--platform", platform)]
    subprocess.run(
        pip + ["download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target), *WHEELS_FROM_INDEX],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-side", type=int, default=256)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    out = ROOT / ".device"
    for split in ("train", "val"):
        print(split, pack_photos(SHARED / split, out / "data" / split, args.max_side, args.quality), "photos")
    pack_wheels(out / "wheels")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((ROOT / name.decode()).stat().st_size for name in tracked if name and (ROOT / name.decode()).is_file())
    total = (size + tree) / 2**20
    print(f".device {size / 2**20:.1f} MiB + tracked files {tree / 2**20:.1f} MiB = {total:.1f} MiB of the 64 MiB the device tool carries")
    if total > 62:
        raise SystemExit("too much to carry: lower --max-side or --quality")


if __name__ == "__main__":
    main()
