"""DIRAC speed at 768x512: median seconds for 1 step and for each further step.

    python bench/speed.py [--bundle DIR] [--repeats 5] [--json out.json]

Prints the medians and the machine; the issue's budget is <= 1 s for 1 step and
<= 1 s for each further step on a 2-core CPU. Results are recorded, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from enhance.enhancers import load_dirac


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (default: the shipped JPEG model)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    enhancer = load_dirac("jpeg", bundle=args.bundle, device=args.device)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(512, 768, 3), dtype=np.uint8)
    enhancer.enhance(image, rate=10, steps=1)  # warm-up: oneDNN picks kernels on first use
    medians = {}
    for steps in args.steps:
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            enhancer.enhance(image, rate=10, steps=steps)
            times.append(time.perf_counter() - start)
        medians[steps] = statistics.median(times)
    first = medians[min(medians)]
    per_step = [(medians[b] - medians[a]) / (b - a) for a, b in zip(args.steps, args.steps[1:])]
    result = {
        "size": "768x512",
        "device": str(enhancer.pipeline.device),
        "dtype": str(enhancer.pipeline.dtype),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "median_seconds": {str(k): round(v, 3) for k, v in medians.items()},
        "one_step_s": round(first, 3),
        "each_further_step_s": round(max(per_step), 3) if per_step else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
