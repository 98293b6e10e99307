"""The latent space's round-trip ceiling: metrics of decode(encode(x)) with no quantization at all.

    nice -n 10 .venv/bin/python bench/latent_ceiling.py [DATASET ...] \
        [--autoencoder taef2] [--repeats 3] [--json bench/results/taef2_ceiling.json]

DATASET defaults to ../shared/data/val. Every image is loaded as `enhance compare` loads it
(EXIF orientation applied, grey and RGBA made RGB), encoded to the autoencoder's float latent
and decoded back; the per-image metrics (PSNR-RGB, MS-SSIM, SSIMULACRA2, ... from
`enhance.metrics.FULL_REFERENCE`) are averaged over images as CompressAI does, SWD is computed
over the whole set at once, as `enhance compare` computes it. No codec built on this latent
space can beat these numbers (short of post-processing in pixel space). Also records the
autoencoder's own encode and decode time for one 768x512 image (median of `--repeats`) on this
machine. The JSON records the exact command line. `bench/latent_codecs.py --ceiling` puts the
same numbers in its table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATASET = Path("../shared/data/val")


def command_line() -> str:
    """The command as it was typed (interpreter, script and arguments), for the results file."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        # Timings are only comparable on an otherwise idle machine: this says how idle it was.
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
    }


def synthetic_768x512(seed: int = 0) -> np.ndarray:
    """A 768x512 test image: a val image resized when one exists, else smooth colour plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:512, 0:768]
    base = np.stack([np.sin(x / 23.0), np.cos(y / 17.0), np.sin((x + y) / 31.0)], axis=-1) * 80 + 128
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def image_768x512(dataset_roots) -> tuple[np.ndarray, str]:
    """(768x512 uint8 image, where it came from): the first dataset image resized, else a synthetic one."""
    from PIL import Image

    from enhance.comparison.dataset import find_dataset, load_dataset_image

    try:
        label, path = find_dataset(dataset_roots)[0]
        _, pixels = load_dataset_image(label, path, 10**9)
        resized = np.asarray(Image.fromarray(pixels).resize((768, 512), Image.Resampling.LANCZOS))
        return np.array(resized, dtype=np.uint8), f"{label} resized to 768x512 (Lanczos)"
    except Exception as error:  # noqa: BLE001 - any dataset problem falls back to the synthetic image
        return synthetic_768x512(), f"synthetic 768x512 (dataset image unusable: {error})"


def median_seconds(function, repeats: int) -> tuple[float, list[float]]:
    function()  # warm-up: oneDNN picks its kernels on first use
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def ceiling(dataset_roots, *, autoencoder_name: str = "taef2", repeats: int = 3, progress=print) -> dict:
    """The round-trip metrics of `autoencoder_name` over the dataset, and its speed at 768x512."""
    from enhance import metrics as quality_metrics
    from enhance.comparison.dataset import find_dataset, load_dataset_image
    from enhance.errors import BadInput
    from enhance.latent import decode_latent, encode_image, load_autoencoder

    autoencoder = load_autoencoder(autoencoder_name, device="cpu")
    images = find_dataset(dataset_roots)
    per_image: dict[str, list[float | None]] = {name: [] for name in quality_metrics.FULL_REFERENCE}
    originals, outputs, labels, reasons = [], [], [], {}
    started = time.perf_counter()
    for index, (label, path) in enumerate(images):
        _, pixels = load_dataset_image(label, path, 10**9)
        with torch.no_grad():
            latent = encode_image(autoencoder, pixels)
            decoded = decode_latent(autoencoder, latent, *pixels.shape[:2])
        for name, metric in quality_metrics.FULL_REFERENCE.items():
            try:
                per_image[name].append(float(metric(pixels, decoded)))
            except BadInput as error:
                per_image[name].append(None)
                reasons.setdefault(name, str(error))
        originals.append(pixels)
        outputs.append(decoded)
        labels.append(label)
        if progress:
            progress(f"[{index + 1}/{len(images)}] {label}: PSNR {per_image['psnr-rgb'][-1]:.2f} dB")
    means = {}
    for name, values in per_image.items():
        present = [v for v in values if v is not None and np.isfinite(v)]
        means[name] = float(np.mean(present)) if present else None
    means["swd"] = float(quality_metrics.swd(originals, outputs))
    metric_seconds = time.perf_counter() - started

    test_image, test_source = image_768x512(dataset_roots)
    with torch.no_grad():
        test_latent = encode_image(autoencoder, test_image)
        encode_s, encode_times = median_seconds(lambda: encode_image(autoencoder, test_image), repeats)
        decode_s, decode_times = median_seconds(lambda: decode_latent(autoencoder, test_latent, 512, 768), repeats)
    return {
        "autoencoder": autoencoder_name,
        "latent": {"channels": autoencoder.channels, "factor": autoencoder.factor},
        "dataset": ", ".join(map(str, dataset_roots)),
        "images": len(labels),
        "metrics": means,
        "metric_notes": reasons,
        "per_image": {label: {name: values[i] for name, values in per_image.items()} for i, label in enumerate(labels)},
        "timing_768x512": {
            "image": test_source,
            "repeats": repeats,
            # The codecs decode in bf16 where the CPU has bf16 kernels; this ceiling runs in fp32.
            "dtype": str(next(autoencoder.parameters()).dtype).removeprefix("torch."),
            "encode_median_s": round(encode_s, 4),
            "decode_median_s": round(decode_s, 4),
            "encode_s": [round(t, 4) for t in encode_times],
            "decode_s": [round(t, 4) for t in decode_times],
        },
        "seconds_total": round(metric_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="*", type=Path, default=[DEFAULT_DATASET])
    parser.add_argument("--autoencoder", default="taef2", help="latent autoencoder bundle name (default taef2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions at 768x512 (median)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    result = {"command": command_line(), "cwd": os.getcwd(), "machine": machine()}
    result.update(ceiling(args.dataset, autoencoder_name=args.autoencoder, repeats=args.repeats))
    summary = {k: result[k] for k in ("autoencoder", "images", "metrics", "timing_768x512")}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
