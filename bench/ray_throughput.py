"""`enhance run` throughput: local --jobs 1, local --jobs 2, and Ray with single-threaded actors.

    nice -n 5 python bench/ray_throughput.py [--images 200] [--size 96x64] [--bundle DIR] \
        [--actors 2] [--json bench/results/ray_throughput.json]

Writes `--images` small JPEGs (smooth gradients, edges and noise; qualities 50-85), then
enhances them into a fresh folder with each setting, one after the other, with the shipped
JPEG model (or `--bundle`), 1 step (the model's default):

- local-jobs-1: this process, torch on every core;
- local-jobs-2: two spawned worker processes, one torch thread each;
- ray-N-actors: `RayEngine(actors=N, num_cpus=1)` on a local Ray started here
  (`ray.init(num_cpus=cores)`, loopback), so cluster start-up is not counted, as with
  an existing cluster; actor start-up (and model loading) is.

Two figures per setting: wall-clock images per second of the whole `run` (start-up
included), and the steady-state rate between the first and the last file recorded (what
an archive of millions of files sees). Ray's overhead is its steady-state rate against the
best local one. The load average is recorded before and after: on a busy machine the
figures are not honest and the JSON says so.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from enhance.runs import run


def write_images(folder: Path, count: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        base = np.stack([128 + 90 * np.sin(x / (5 + index % 7) + y / 23), 128 + 80 * np.cos(y / 11 - x / 31), 100 + 60 * np.sin((x + y) / 17)], axis=2)
        base += rng.normal(0, 8, size=base.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=50 + 5 * (index % 8))
        path = folder / f"{index // 50:02d}" / f"img-{index:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())


def timed(label: str, inputs: Path, out: Path, **options) -> dict:
    stamps = []
    start = time.perf_counter()
    summary = run([inputs], out, progress_callback=lambda *_: stamps.append(time.perf_counter()), **options)
    wall = time.perf_counter() - start
    if summary.failed or len(summary.done) != len(stamps):
        raise SystemExit(f"{label}: {summary.line()}: {summary.failed[:1]}")
    steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    result = {
        "setting": label, "images": len(stamps), "wall_s": round(wall, 3), "first_result_s": round(stamps[0] - start, 3),
        "images_per_s": round(len(stamps) / wall, 2), "steady_images_per_s": round(steady, 2) if steady else None,
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", default="96x64", help="WIDTHxHEIGHT")
    parser.add_argument("--bundle", type=Path, default=None, help="DIRAC bundle (default: the shipped JPEG model)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    cores = os.cpu_count() or 1

    import ray

    from enhance.engines.ray_engine import RayEngine

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as scratch:
        root = Path(scratch)
        write_images(root / "in", args.images, width, height)
        common = {"model": args.bundle}
        results = [
            timed("local-jobs-1", root / "in", root / "jobs1", jobs=1, **common),
            timed("local-jobs-2", root / "in", root / "jobs2", jobs=2, **common),
        ]
        ray.init(num_cpus=cores, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, logging_level="WARNING")
        try:
            results.append(timed(f"ray-{args.actors}-actors", root / "in", root / "ray", engine=RayEngine(actors=args.actors, num_cpus=1), **common))
        finally:
            ray.shutdown()
    load_after = os.getloadavg()

    best_local = max(r["steady_images_per_s"] or 0 for r in results[:2])
    best_local_wall = max(r["images_per_s"] for r in results[:2])
    on_ray = results[2]
    report = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "images": args.images, "size": args.size, "model": str(args.bundle) if args.bundle else "shipped JPEG model",
        "cpu": platform.processor() or platform.machine(), "cores": cores,
        "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in load_after],
        "results": results,
        "ray_steady_overhead_vs_best_local": round(1 - (on_ray["steady_images_per_s"] or 0) / best_local, 3) if best_local else None,
        "ray_wall_overhead_vs_best_local": round(1 - on_ray["images_per_s"] / best_local_wall, 3),
    }
    if max(load_before[0], load_after[0]) > cores:
        report["caveat"] = f"load average above {cores} (other jobs on the machine): the figures are not honest throughput"
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
