"""Full generative codecs (latent-diffusion, PerCo, ...) against JPEG, WebP, AVIF and JPEG XL.

    nice -n 10 .venv/bin/python bench/latent_codecs.py [DATASET ...] \
        --codec latent-diffusion [--bundle latent-diffusion=DIR] [--steps latent-diffusion=0,default] \
        [--codec perco --bundle perco=DIR --steps perco=default,20] [--rates perco=1,2,3] \
        [--base jpeg,webp,avif,jxl] [--quality avif=0,2,5,...] [--ceiling | --ceiling-json FILE] \
        [--work results/latent_codecs] [--repeats 3] [--no-timing] [--images N] \
        --json bench/results/latent_codecs.json --markdown bench/results/latent_codecs.md \
        [--plot bench/results/latent_codecs.png]

Examples: the base codecs alone on val (no full codec): `bench/latent_codecs.py --json ...`;
issue 10's benchmark: `--codec latent-diffusion --ceiling` (its steps default to 0 and its
default); issue 11's: `--codec perco --codec latent-diffusion --base avif,jxl`.

DATASET defaults to ../shared/data/val (`--images N`: N of its images, evenly spaced in name
order, for a quick table; the document says so). Every full codec runs at every rate level it has (or
`--rates NAME=...`) and at each of its `--steps` (`default` = the codec's own default, 0 = the
naive decode); every base codec over a quality grid that reaches down to its lowest bpp (its
lowest quality setting). The per-image work is `enhance compare`'s own (`enhance.comparison`:
the same encode/decode/metric passes and the same cache under `--work`/cache, so a rerun, or
adding a codec, computes only what is new, and `enhance compare -o results/latent_codecs` shares
it for base codecs and shipped full codecs; a --bundle adds the bundle's path and fingerprint to
the cache key); base codecs are compared plain (no DIRAC). Metrics: PSNR-RGB, MS-SSIM, SSIMULACRA2
and the finest band's energy against the original's (hf-energy-ratio: 1 is as much fine detail,
less is blurrier; means over images), SWD (over the set), plus mean bytes and bpp of the codec's
own bitstream. Realism is SWD and fine energy together: noise can lower SWD without being texture.

Matched bpp: at each full-codec operating point, every other curve (base codecs, other
configurations) is interpolated at that bpp, monotone (PCHIP) in log-bpp between its measured
points, and "n/a" outside its measured range; the lowest bpp each configuration reaches is
stated. For a codec with a steps-0 configuration, each diffused point is also set against the
naive decode at twice its bpp (the latent-diffusion paper's claim). Decode time: seconds per
768x512 image on this machine (a val image resized, median of `--repeats` after a warm-up),
for every configuration and rate.

Writes the JSON (with the exact command line), the Markdown table and one PNG with rate plots
of PSNR, MS-SSIM, SSIMULACRA2 and SWD (default: the JSON's path with .png); CompressAI-style
JSON per configuration goes to `--work`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latent_ceiling import DEFAULT_DATASET, command_line, image_768x512, machine  # noqa: E402

METRICS = ["psnr-rgb", "ms-ssim-rgb", "ssimulacra2", "swd", "hf-energy-ratio"]
LABELS = {"psnr-rgb": "PSNR (dB)", "ms-ssim-rgb": "MS-SSIM", "ssimulacra2": "SSIMULACRA2", "swd": "SWD", "hf-energy-ratio": "fine energy"}
BASE_CODECS = ["jpeg", "webp", "avif", "jxl"]
# Dense at the low end, where the full codecs live; each grid starts at the codec's lowest setting.
BASE_QUALITIES = {
    "jpeg": [1, 3, 6, 10, 20, 40, 70],
    "webp": [0, 5, 15, 30, 50, 75],
    "avif": [0, 5, 12, 20, 30, 45, 65],
    "jxl": [0, 5, 12, 20, 35, 55, 75],
}
DEFAULT_STEPS = {"latent-diffusion": "0,default"}
DEFAULT_WORK = Path("results/latent_codecs")


# --- arguments ----------------------------------------------------------------------------


def _per_codec(values: list[str], flag: str) -> dict[str, str]:
    parsed = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"{flag} takes NAME=VALUE, got {value!r}")
        parsed[name] = rest
    return parsed


def _numbers(text: str, flag: str) -> list:
    try:
        numbers = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"{flag}: not a comma list of numbers: {text!r}") from None
    return [int(n) if n.is_integer() else n for n in numbers]


def _steps(text: str) -> list[int | None]:
    steps = []
    for part in text.split(","):
        part = part.strip()
        if part == "default":
            steps.append(None)
        elif part.isdigit():
            steps.append(int(part))
        else:
            raise SystemExit(f"--steps: {part!r} is neither a whole number nor 'default'")
    return list(dict.fromkeys(steps))


def _option(value: str) -> tuple[str, str, object]:
    name, sep, rest = value.partition(":")
    key, sep2, raw = rest.partition("=")
    if not sep or not sep2 or not key:
        raise SystemExit(f"--option takes NAME:KEY=VALUE, got {value!r}")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw
    return name, key, parsed


# --- full codecs from a bundle folder -----------------------------------------------------


def bundle_fingerprint(directory: Path) -> str:
    """Size, mtime and name of every file in the bundle: retrained weights in the same folder get new cache keys."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def bundled_factory(factory, directory: Path):
    """`factory` building its codec from `directory`; available when that bundle loads (the plugin's
    own `available()` only looks for its shipped weights)."""

    def make(**options):
        options.pop("bundle_fingerprint", None)
        options["bundle"] = directory
        instance = factory(**options)

        def available() -> tuple[bool, str]:
            try:
                instance.rate_range  # noqa: B018 - loads the bundle
            except Exception as error:  # noqa: BLE001 - whatever the plugin raises is the reason
                return False, f"bundle {directory}: {type(error).__name__}: {error}"
            return True, ""

        instance.available = available
        return instance

    return make


# --- running the comparison passes --------------------------------------------------------


@dataclass
class Curve:
    """One configuration: a base codec, or a full codec at one step count."""

    name: str
    codec: str
    kind: str  # "base" or "full"
    steps: int | None
    qualities: list
    description: str = ""
    results: dict = field(default_factory=dict)  # CompressAI-style lists, one entry per quality
    timing: dict = field(default_factory=dict)  # quality -> decode seconds at 768x512
    images: int = 0


def evenly(items: list, count: int | None) -> list:
    """`count` of `items`, evenly spaced (all of them when count is None or not smaller)."""
    if count is None or count >= len(items):
        return items
    return [items[i * len(items) // count] for i in range(count)]


def run_codec(codec: str, options: dict, qualities: list, steps: list, roots, work_dir: Path, metrics: list[str], seed: int, notes: list[str], skipped: list, log, image_count: int | None = None) -> tuple[list[Curve], object]:
    """Every image through one codec at every quality (and step count), with compare's machinery and cache."""
    from enhance.comparison.cache import ResultCache
    from enhance.comparison.dataset import find_dataset, load_dataset_image
    from enhance.comparison.pipeline import Work, process_image
    from enhance.comparison.scoring import plan_metrics
    from enhance.comparison.subject import Configuration, Subject
    from enhance.comparison.writing import score_sets
    from enhance.comparison.tables import configuration_results
    from enhance.errors import CodecUnavailable, EnhanceError, WeightsError
    from enhance.image import DEFAULT_MAX_PIXELS

    subject = Subject(name=codec, options=options)
    if qualities is None:  # a full codec: every rate level it has
        low, high = subject.rate_range
        qualities = list(range(math.ceil(low), math.floor(high) + 1))
    subject.check_qualities(qualities)
    if subject.full:
        configurations = [
            Configuration(
                name=codec if count is None else f"{codec}-{count}",
                kind="full",
                steps=count,
                description=f"{subject.describe()}, decoded with {'its default' if count is None else count} steps",
            )
            for count in steps
        ]
    else:
        configurations = [Configuration(name=codec, kind="base", steps=None, description=subject.describe())]
    plan = plan_metrics(metrics, notes)
    cache = ResultCache(root=work_dir / "cache")
    work = Work(subject=subject, enhancer=None, configurations=configurations, qualities=qualities, seed=seed, consistent=False, cache=cache)
    processed, originals, outputs = [], [], []
    images = evenly(find_dataset(roots), image_count)
    started = time.perf_counter()
    for index, (label, path) in enumerate(images):
        try:
            image, pixels = load_dataset_image(label, path, DEFAULT_MAX_PIXELS)
            image_outputs, _ = process_image(work, image, pixels, plan)
        except (CodecUnavailable, WeightsError):
            raise
        except EnhanceError as error:
            skipped.append({"codec": codec, "image": label, "reason": str(error)})
            continue
        processed.append(image)
        originals.append(pixels)
        outputs.extend(image_outputs)
        log(f"  {codec} [{index + 1}/{len(images)}] {label} ({time.perf_counter() - started:.0f} s)")
    if not processed:
        raise SystemExit(f"{codec}: no usable image in {', '.join(map(str, roots))}")
    set_scores = score_sets(work, plan, processed, originals, outputs)
    curves = []
    for configuration in configurations:
        own = [o for o in outputs if o.configuration == configuration.name]
        own_values = {(m, q): s.value for (n, m, q), s in set_scores.items() if n == configuration.name}
        document = configuration_results(configuration, qualities, own, list(plan.per_image), list(plan.per_set), own_values, {})
        bytes_ = [float(np.mean([o.bytes for o in own if o.quality == q])) for q in qualities]
        document["results"]["bytes"] = bytes_
        (work_dir / f"{configuration.name}.json").write_text(json.dumps(document, indent=2) + "\n")
        curves.append(
            Curve(
                name=configuration.name, codec=codec, kind="full" if subject.full else "base", steps=configuration.steps,
                qualities=list(qualities), description=configuration.description, results=document["results"], images=len(processed),
            )
        )
    return curves, subject


def time_decodes(subject, curves: list[Curve], image: np.ndarray, repeats: int, seed: int, log) -> None:
    """Median decode seconds of one 768x512 image, per configuration and quality (after one warm-up per configuration)."""
    for curve in curves:
        warmed = False
        for quality in curve.qualities:
            data = subject.encode(image, quality)

            def decode():
                return subject.decode(data, image.shape, steps=curve.steps, seed=seed)

            if not warmed:
                decode()  # oneDNN picks its kernels on first use; the model loads
                warmed = True
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                decode()
                times.append(time.perf_counter() - start)
            curve.timing[quality] = {"median_s": statistics.median(times), "bytes": len(data), "bpp": 8 * len(data) / (768 * 512)}
        log(f"  timed {curve.name}: " + ", ".join(f"q{q} {t['median_s']:.3f}s" for q, t in curve.timing.items()))


# --- matched bpp --------------------------------------------------------------------------


def curve_points(curve: Curve, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(log bpp, metric) sorted by bpp, missing values left out, equal bpps averaged."""
    pairs = {}
    for bpp, value in zip(curve.results["bpp"], curve.results.get(metric, [])):
        if bpp is None or value is None or not (bpp > 0 and math.isfinite(value)):
            continue
        pairs.setdefault(bpp, []).append(value)
    rates = sorted(pairs)
    return np.log(np.array(rates, dtype=float)), np.array([np.mean(pairs[r]) for r in rates], dtype=float)


def interpolate(curve: Curve, metric: str, bpp: float):
    """The curve's `metric` at `bpp` (PCHIP in log-bpp), or None outside its measured bpp range."""
    from scipy.interpolate import PchipInterpolator

    x, y = curve_points(curve, metric)
    if not bpp or bpp <= 0 or len(x) == 0:
        return None
    target = math.log(bpp)
    tolerance = 1e-9
    if target < x[0] - tolerance or target > x[-1] + tolerance:
        return None
    if len(x) == 1:
        return float(y[0])
    return float(PchipInterpolator(x, y)(min(max(target, x[0]), x[-1])))


def lowest_bpp(curve: Curve) -> float | None:
    rates = [b for b in curve.results["bpp"] if b is not None]
    return min(rates) if rates else None


def matched(curves: list[Curve]) -> list[dict]:
    """For every full-codec operating point: every other curve's metrics at its bpp."""
    rows = []
    for curve in curves:
        if curve.kind != "full":
            continue
        naive = next((c for c in curves if c.codec == curve.codec and c.steps == 0 and c is not curve), None)
        for index, quality in enumerate(curve.qualities):
            bpp = curve.results["bpp"][index]
            own = {m: curve.results.get(m, [None] * len(curve.qualities))[index] for m in METRICS}
            others = {}
            for other in curves:
                if other is curve:
                    continue
                others[other.name] = {m: interpolate(other, m, bpp) for m in METRICS}
            row = {"configuration": curve.name, "rate": quality, "bpp": bpp, "metrics": own, "at_same_bpp": others}
            if naive is not None and bpp:
                row["naive_at_2x_bpp"] = {"configuration": naive.name, "bpp": 2 * bpp, **{m: interpolate(naive, m, 2 * bpp) for m in METRICS}}
            rows.append(row)
    return rows


# --- output -------------------------------------------------------------------------------


def _fmt(value, metric: str | None = None) -> str:
    if value is None:
        return "n/a"
    if metric == "bpp":
        return f"{value:.4f}"
    if metric == "ms-ssim-rgb":
        return f"{value:.4f}"
    if metric == "swd":
        return f"{value:.3g}"
    if metric == "bytes":
        return f"{value:.0f}"
    return f"{value:.2f}"


def markdown(document: dict) -> str:
    lines = [f"# Latent codecs against base codecs on {document['dataset']}", ""]
    lines += [f"Command: `{document['command']}`", "", f"Images: {document['images']}. Machine: {document['machine']['cores']} cores, torch {document['machine']['torch']} with {document['machine']['torch_threads']} threads.", ""]
    lines += ["## Every configuration", ""]
    header = ["configuration", "q / rate", "bytes", "bpp", *[LABELS[m] for m in METRICS], "decode s @768x512"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ceiling = document.get("ceiling")
    if ceiling:
        values, timing = ceiling["metrics"], ceiling["timing_768x512"]
        lines.append(
            f"| {ceiling['autoencoder']} round trip (ceiling) | - | - | - | "
            + " | ".join(_fmt(values.get(m), m) for m in METRICS)
            + f" | {_fmt(timing['decode_median_s'])} (decoder alone, {timing['dtype']}) |"
        )
    for curve in document["configurations"]:
        results = curve["results"]
        for index, quality in enumerate(curve["qualities"]):
            timing = curve["decode_768x512"].get(str(quality))
            cells = [
                curve["name"], str(quality), _fmt(results["bytes"][index], "bytes"), _fmt(results["bpp"][index], "bpp"),
                *[_fmt(results.get(m, [None] * 99)[index], m) for m in METRICS],
                f"{timing['median_s']:.3f}" if timing else "-",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Lowest bpp each configuration reaches on this dataset", ""]
    lines += ["| configuration | lowest bpp | at q / rate |", "|---|---|---|"]
    for name, low in document["lowest_bpp"].items():
        lines.append(f"| {name} | {_fmt(low['bpp'], 'bpp')} | {low['quality']} |")
    if document["matched"]:
        lines += ["", "## At each full-codec operating point: the others at the same bpp", ""]
        lines += ["Interpolated monotonically (PCHIP) in log-bpp between measured points; n/a = outside that configuration's measured bpp range.", ""]
        header = ["operating point", "bpp", "configuration", *[LABELS[m] for m in METRICS]]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in document["matched"]:
            point = f"{row['configuration']} rate {row['rate']}"
            lines.append("| " + " | ".join([f"**{point}**", _fmt(row["bpp"], "bpp"), "(itself)", *[_fmt(row["metrics"][m], m) for m in METRICS]]) + " |")
            for name, values in row["at_same_bpp"].items():
                lines.append("| " + " | ".join(["", "", name, *[_fmt(values[m], m) for m in METRICS]]) + " |")
            naive = row.get("naive_at_2x_bpp")
            if naive:
                lines.append("| " + " | ".join(["", _fmt(naive["bpp"], "bpp"), f"{naive['configuration']} at 2x bpp", *[_fmt(naive[m], m) for m in METRICS]]) + " |")
    if document["notes"] or document["skipped"]:
        lines += ["", "## Notes", ""]
        lines += [f"- {note}" for note in document["notes"]]
        lines += [f"- skipped {s['image']} for {s['codec']}: {s['reason']}" for s in document["skipped"]]
    return "\n".join(lines) + "\n"


def plot(path: Path, document: dict) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=(17, 8.5), layout="constrained")
    axes_grid = figure.subplots(2, 3)
    axes_grid.flat[-1].set_visible(False)
    for axes, metric in zip(axes_grid.flat, METRICS):
        for curve in document["configurations"]:
            points = [(b, v) for b, v in zip(curve["results"]["bpp"], curve["results"].get(metric, [])) if b and v is not None]
            if points:
                points.sort()
                style = "-" if curve["kind"] == "base" else "--"
                axes.plot([p[0] for p in points], [p[1] for p in points], style, marker="o" if curve["kind"] == "full" else ".", label=curve["name"])
        ceiling = document.get("ceiling")
        if ceiling and ceiling["metrics"].get(metric) is not None:
            axes.axhline(ceiling["metrics"][metric], color="grey", linestyle=":", label=f"{ceiling['autoencoder']} ceiling")
        axes.set_xscale("log")
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.set_xlabel("bits per pixel")
        axes.set_ylabel(LABELS[metric])
        if metric == "swd":
            axes.set_yscale("log")
            axes.set_title("SWD (lower is better)")
        elif metric == "hf-energy-ratio":
            axes.axhline(1.0, color="black", linewidth=0.8)
            axes.set_title("fine-band energy / the original's (1 is best)")
        else:
            axes.set_title(f"{LABELS[metric]} (higher is better)")
        axes.grid(True, which="both", alpha=0.3)
    axes_grid.flat[0].legend(fontsize="small")
    figure.suptitle(f"{document['dataset']} ({document['images']} images)")
    FigureCanvasAgg(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="*", type=Path, default=[DEFAULT_DATASET])
    parser.add_argument("--codec", action="append", default=[], help="a full codec by registry name (repeatable)")
    parser.add_argument("--bundle", action="append", default=[], help="NAME=DIR: build full codec NAME from bundle folder DIR")
    parser.add_argument("--steps", action="append", default=[], help="NAME=0,default,...: decoder step counts of full codec NAME")
    parser.add_argument("--rates", action="append", default=[], help="NAME=1,2,...: rate levels of full codec NAME (default: all)")
    parser.add_argument("--option", action="append", default=[], help="NAME:KEY=VALUE codec option (VALUE parsed as JSON when it can be)")
    parser.add_argument("--base", default=",".join(BASE_CODECS), help="base codecs, comma list ('' for none)")
    parser.add_argument("--quality", action="append", default=[], help="NAME=q1,q2,...: a base codec's quality grid")
    parser.add_argument("--ceiling", action="store_true", help="compute the TAEF2 round-trip ceiling too (bench/latent_ceiling.py)")
    parser.add_argument("--ceiling-json", type=Path, default=None, help="take the ceiling from a latent_ceiling.py JSON instead")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help=f"cache and per-configuration JSONs (default {DEFAULT_WORK})")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per point at 768x512 (median)")
    parser.add_argument("--no-timing", action="store_true", help="skip the 768x512 decode timing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=None, help="only N images of the dataset, evenly spaced")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="PNG rate plot (default: the JSON's path with .png)")
    args = parser.parse_args()

    from enhance import registry

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    bundles = {name: Path(d).resolve() for name, d in _per_codec(args.bundle, "--bundle").items()}
    steps = {name: _steps(t) for name, t in {**DEFAULT_STEPS, **_per_codec(args.steps, "--steps")}.items()}
    rates = {name: _numbers(t, "--rates") for name, t in _per_codec(args.rates, "--rates").items()}
    grids = {**BASE_QUALITIES, **{n: _numbers(t, "--quality") for n, t in _per_codec(args.quality, "--quality").items()}}
    options: dict[str, dict] = {}
    for value in args.option:
        name, key, parsed = _option(value)
        options.setdefault(name, {})[key] = parsed
    base = [name for name in args.base.split(",") if name.strip()]
    unknown = [name for name in base if name not in grids]
    if unknown:
        raise SystemExit(f"no quality grid for {', '.join(unknown)}: give --quality NAME=...")
    for name in bundles:
        if name not in args.codec:
            raise SystemExit(f"--bundle {name}=...: {name} is not one of the --codec full codecs")

    installed = registry.factories("full_codec")
    injected = {}
    for name in args.codec:
        if name not in installed:
            raise SystemExit(f"no full codec named {name!r} (installed: {', '.join(sorted(installed)) or 'none'})")
        if name in bundles:
            injected[name] = bundled_factory(installed[name], bundles[name])
            options.setdefault(name, {}).update(bundle=str(bundles[name]), bundle_fingerprint=bundle_fingerprint(bundles[name]))
        else:
            injected[name] = installed[name]
    for name, factory in installed.items():
        injected.setdefault(name, factory)

    args.work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    skipped: list[dict] = []
    curves: list[Curve] = []
    timing_image, timing_source = (None, None) if args.no_timing else image_768x512(args.dataset)
    with registry.use_plugins(full_codecs=injected):
        for name in [*args.codec, *base]:
            full = name in args.codec
            qualities = rates.get(name) if full else grids[name]
            log(f"{name}: qualities {qualities or 'all rate levels'}" + (f", steps {steps.get(name, [None])}" if full else ""))
            made, subject = run_codec(
                name, options.get(name, {}), qualities, steps.get(name, [None]) if full else [None], args.dataset, args.work,
                METRICS, args.seed, notes, skipped, log, args.images,
            )
            if timing_image is not None:
                time_decodes(subject, made, timing_image, args.repeats, args.seed, log)
            curves += made

    if args.images is not None:
        notes.append(f"a subset: --images {args.images}, evenly spaced in name order (the ceiling, if shown, is over the whole dataset)")
    ceiling = None
    if args.ceiling_json:
        ceiling = json.loads(args.ceiling_json.read_text())
        ceiling.pop("per_image", None)
        dataset = ", ".join(map(str, args.dataset))
        if ceiling.get("dataset") != dataset:
            notes.append(f"the ceiling ({args.ceiling_json}) was measured on {ceiling.get('dataset')}, not on {dataset}")
    elif args.ceiling:
        from latent_ceiling import ceiling as compute_ceiling

        ceiling = compute_ceiling(args.dataset, repeats=args.repeats, progress=log)
        ceiling.pop("per_image", None)

    document = {
        "format": "enhance.bench-latent-codecs",
        "version": 1,
        "command": command_line(),
        "cwd": os.getcwd(),
        "machine": machine(),
        "dataset": ", ".join(map(str, args.dataset)),
        "images": max((c.images for c in curves), default=0),
        "metrics": METRICS,
        "interpolation": "PCHIP in log(bpp) between measured points of each configuration; null outside its measured bpp range",
        "timing": None if args.no_timing else {"image": timing_source, "size": "768x512", "repeats": args.repeats, "statistic": "median after one warm-up"},
        "bundles": {name: {"path": str(d), "fingerprint": options[name]["bundle_fingerprint"]} for name, d in bundles.items()},
        "configurations": [
            {
                "name": c.name, "codec": c.codec, "kind": c.kind, "steps": c.steps, "qualities": c.qualities,
                "description": c.description, "images": c.images,
                "results": {k: c.results[k] for k in ["quality", "bytes", "bpp", *METRICS, "encoding_time", "decoding_time"] if k in c.results},
                "decode_768x512": {str(q): t for q, t in c.timing.items()},
            }
            for c in curves
        ],
        "lowest_bpp": {
            c.name: {"bpp": lowest_bpp(c), "quality": c.qualities[c.results["bpp"].index(lowest_bpp(c))] if lowest_bpp(c) is not None else None}
            for c in curves
        },
        "matched": matched(curves),
        "ceiling": ceiling,
        "notes": notes,
        "skipped": skipped,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from enhance.comparison.tables import finite_or_none

    args.json.write_text(json.dumps(finite_or_none(document), indent=2, allow_nan=False) + "\n")
    log(f"wrote {args.json}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(document))
        log(f"wrote {args.markdown}")
    plot_path = args.plot or args.json.with_suffix(".png")
    plot(plot_path, document)
    log(f"wrote {plot_path}")
    print(markdown(document))


if __name__ == "__main__":
    main()
