"""DIRAC on JPEG: quality and cost on the validation set, at several JPEG qualities.

    python bench/dirac_jpeg.py [--bundle DIR] [--data ../shared/data/val] \
        [--qualities 5 10 20 30 40] [--json bench/results/dirac_jpeg.json] [--set-default]

Rows: JPEG (Pillow, 4:2:0; greyscale images as greyscale JPEG), DIRAC-1, DIRAC-1
consistent (projected onto the file's quantization constraint set), and DIRAC-n for
n in 2, 4, 10, 20 up to the model's schedule length (and that length): early stops of one
trajectory, so each image is sampled once.
Metrics: bpp, PSNR (RGB), PSNR-B, MS-SSIM, SSIMULACRA2, the fine-band energy against the
original's (hf-energy-ratio, 1.0 = as much fine detail), and SWD (sliced Wasserstein distance
between Laplacian-pyramid patch sets of originals and outputs; lower is more real), also per
pyramid level (swd-by-level, finest first) in the JSON.
The realism default is the n with the lowest mean SWD over qualities 5-20 among those
whose PSNR is not below JPEG's at any of them; --set-default writes it to the bundle.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from enhance.codecs.pillow import JpegCodec
from enhance.consistency import project_to_jpeg
from enhance.enhance_one import CodedImage
from enhance.enhancers import bundle_directory, load_dirac
from enhance.enhancers.dirac import DiracConfig
from enhance.metrics import FULL_REFERENCE
from enhance.metrics.sliced_wasserstein import swd_by_level
from enhance.image import find_images

METRICS = ("psnr-rgb", "psnr-b", "ms-ssim-rgb", "ssimulacra2", "hf-energy-ratio")


def realism_candidates(schedule_steps: int) -> list[int]:
    """The early stops compared as realism settings: 2, 4, 10 and 20 where the schedule has them, and its last step."""
    return sorted(({n for n in (2, 4, 10, 20) if n < schedule_steps} | {schedule_steps}) - {1})


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Pillow JPEG through the codec adapter: 4:2:0, greyscale images as greyscale JPEG."""
    if image.mode == "L":
        return JpegCodec().encode_greyscale(np.asarray(image), quality)
    return JpegCodec().encode(np.asarray(image), quality)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--data", type=Path, nargs="+", default=[Path("../shared/data/val")])
    parser.add_argument("--qualities", type=int, nargs="+", default=[5, 10, 20, 30, 40])
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (quick checks)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--set-default", action="store_true", help="write the chosen realism steps into the bundle")
    args = parser.parse_args()

    bundle = args.bundle or bundle_directory("jpeg")
    enhancer = load_dirac("jpeg", bundle=bundle)
    paths = find_images(args.data)[: args.limit]
    originals = [Image.open(p) for p in paths]
    candidates_n = realism_candidates(enhancer.pipeline.config.schedule.schedule_steps)
    stops = sorted({1, *candidates_n})
    rows = ["jpeg", "dirac-1", "dirac-1-consistent"] + [f"dirac-{n}" for n in candidates_n]
    results = {}
    for quality in args.qualities:
        per_row = {row: {m: [] for m in METRICS} for row in rows}
        outputs = {row: [] for row in rows}
        references, bpps = [], []
        seconds = {"dirac-1": [], f"dirac-{max(stops)}-trajectory": [], "consistency": []}
        for original in originals:
            image = original if original.mode == "L" else original.convert("RGB")
            data = encode_jpeg(image, quality)
            reference = np.asarray(image.convert("RGB"))
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            bpps.append(len(data) * 8 / (reference.shape[0] * reference.shape[1]))
            rate = CodedImage.read(data).rate
            start = time.perf_counter()
            enhancer.enhance(decoded, rate=rate, steps=1)
            seconds["dirac-1"].append(time.perf_counter() - start)
            start = time.perf_counter()
            trajectory = enhancer.enhance_stops(decoded, rate=rate, stops=stops)
            seconds[f"dirac-{max(stops)}-trajectory"].append(time.perf_counter() - start)
            start = time.perf_counter()
            consistent = project_to_jpeg(trajectory[1], data)
            seconds["consistency"].append(time.perf_counter() - start)
            candidates = {"jpeg": decoded, "dirac-1": trajectory[1], "dirac-1-consistent": consistent}
            candidates.update({f"dirac-{n}": trajectory[n] for n in candidates_n})
            references.append(reference)
            for row, output in candidates.items():
                outputs[row].append(output)
                for metric in METRICS:
                    per_row[row][metric].append(FULL_REFERENCE[metric](reference, output))
        summary = {}
        for row in rows:
            summary[row] = {metric: float(np.mean(values)) for metric, values in per_row[row].items()}
            summary[row]["bpp"] = float(np.mean(bpps))
            levels = swd_by_level(references, outputs[row])
            summary[row]["swd"] = float(np.mean(levels))
            summary[row]["swd-by-level"] = [round(float(v), 2) for v in levels]
        results[str(quality)] = {
            "rows": summary,
            "seconds_per_image": {k: round(statistics.mean(v), 3) for k, v in seconds.items()},
        }
        print(f"q{quality}: " + ", ".join(f"{row} {summary[row]['psnr-rgb']:.2f} dB swd {summary[row]['swd']:.3f}" for row in rows), flush=True)

    fidelity_qualities = [q for q in args.qualities if 5 <= q <= 20]
    eligible = [
        n for n in candidates_n
        if all(results[str(q)]["rows"][f"dirac-{n}"]["psnr-rgb"] >= results[str(q)]["rows"]["jpeg"]["psnr-rgb"] for q in fidelity_qualities)
    ]
    chosen = min(eligible, key=lambda n: np.mean([results[str(q)]["rows"][f"dirac-{n}"]["swd"] for q in fidelity_qualities]), default=1)
    report = {
        "command": "python " + " ".join(sys.argv),
        "bundle": str(bundle),
        "images": len(paths),
        "device": str(enhancer.pipeline.device),
        "dtype": str(enhancer.pipeline.dtype),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "chosen_default_steps": chosen,
        "results": results,
    }
    report["targets"] = issue_targets(results, chosen)
    print(markdown_table(results, rows))
    print(f"realism default: {chosen} steps (lowest mean SWD at q5-20 with PSNR >= JPEG)")
    for name, verdict in report["targets"].items():
        print(f"{name}: {verdict}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.set_default:
        config_path = Path(bundle) / "config.json"
        replace(DiracConfig.load(config_path), default_steps=chosen).save(config_path)


def issue_targets(results: dict, realism_steps: int) -> dict[str, str]:
    """The realism and fidelity targets (issue 12), each with the measured value and whether it is met."""
    targets = {}
    for quality in ("5", "10", "20"):
        if quality not in results or realism_steps == 1:
            continue
        rows = results[quality]["rows"]
        jpeg, realism = rows["jpeg"], rows[f"dirac-{realism_steps}"]
        checks = {
            "SWD >= 25% below JPEG's": realism["swd"] <= 0.75 * jpeg["swd"],
            "PSNR not below JPEG's": realism["psnr-rgb"] >= jpeg["psnr-rgb"],
            "fine energy 0.85-1.15": 0.85 <= realism["hf-energy-ratio"] <= 1.15,
            "SSIMULACRA2 not below JPEG's": realism["ssimulacra2"] >= jpeg["ssimulacra2"],
        }
        values = (
            f"SWD {realism['swd']:.2f} vs {jpeg['swd']:.2f} ({realism['swd'] / jpeg['swd'] - 1:+.0%}), "
            f"PSNR {realism['psnr-rgb']:.2f} vs {jpeg['psnr-rgb']:.2f}, fine energy {realism['hf-energy-ratio']:.2f}, "
            f"SSIMULACRA2 {realism['ssimulacra2']:.2f} vs {jpeg['ssimulacra2']:.2f}"
        )
        failed = [name for name, ok in checks.items() if not ok]
        targets[f"realism q{quality}"] = values + ("; met" if not failed else "; not met: " + ", ".join(failed))
    for quality, gain in (("10", 1.8), ("40", 1.5)):
        if quality in results:
            rows = results[quality]["rows"]
            measured = rows["dirac-1"]["psnr-rgb"] - rows["jpeg"]["psnr-rgb"]
            targets[f"fidelity q{quality}"] = f"DIRAC-1 {measured:+.2f} dB (target +{gain}); {'met' if measured >= gain else 'not met'}"
    return targets


def markdown_table(results: dict, rows: list[str]) -> str:
    lines = ["| q | row | bpp | PSNR dB | PSNR-B dB | MS-SSIM | SSIMULACRA2 | fine energy | SWD |", "|---|---|---|---|---|---|---|---|---|"]
    for quality, result in results.items():
        for row in rows:
            r = result["rows"][row]
            lines.append(
                f"| {quality} | {row} | {r['bpp']:.3f} | {r['psnr-rgb']:.2f} | {r['psnr-b']:.2f} | {r['ms-ssim-rgb']:.4f} "
                f"| {r['ssimulacra2']:.2f} | {r['hf-energy-ratio']:.2f} | {r['swd']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
