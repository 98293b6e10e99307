"""The `enhance` command line: a thin typer layer over the library API.

Each command parses its arguments, calls one library function and prints the result.
Errors the user can act on (`enhance.errors.EnhanceError`) print one line and exit 2.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from . import __version__
from .errors import EnhanceError

# Plain (click) help, not rich panels: at 80 columns rich cuts long option names ("--max-megapixe…").
app = typer.Typer(add_completion=False, no_args_is_help=True, help="Make decoded images look real again.", rich_markup_mode=None)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"enhance {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Make images decoded by standard and neural codecs look real again."""


def fail(message: str) -> None:
    typer.echo(f"enhance: {message}", err=True)
    raise typer.Exit(2)


# Commands are registered below, one section per area of the library.


# --- encode / decode ------------------------------------------------------------


def _quality(text: str) -> int | float:
    # Codecs take integers (JPEG quality, model index) or reals (rates); keep what was typed.
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None


@app.command()
def encode(
    image: Path = typer.Argument(..., help="Image to encode."),
    codec: str = typer.Option(..., "-c", "--codec", help="Codec name (see `enhance codecs`)."),
    quality: str = typer.Option(..., "-q", "--quality", "--rate", help="Rate on the codec's own scale (a quality, QP, bpp...)."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write."),
    caption: Optional[str] = typer.Option(
        None, help="Text description sent with the image, for codecs that carry one (perco); default: the file's own."
    ),
) -> None:
    """Encode an image with any codec; prints its size and bits per pixel."""
    from .api import encode_file

    result = encode_file(image, codec, _quality(quality), output, caption=caption)
    line = f"{result.path}: {result.file_bytes} bytes, {result.file_bpp:.4f} bpp"
    if result.payload_bytes is not None:
        line += f" (payload {result.payload_bytes} bytes, {result.payload_bpp:.4f} bpp; file {result.file_bpp:.4f} bpp)"
    typer.echo(line)


@app.command()
def decode(
    file: Path = typer.Argument(..., help="Encoded file: an enhance container or a JPEG/WebP/AVIF/HEIC/JPEG 2000/JPEG XL file."),
    output: Path = typer.Option(..., "-o", "--output", help="Image to write (format from its suffix)."),
    steps: Optional[int] = typer.Option(None, help="Sampling steps, for generative codecs (default: the codec's)."),
    seed: int = typer.Option(0, help="Sampling seed, for generative codecs."),
) -> None:
    """Decode a file to an image."""
    from .api import decode_file

    pixels = decode_file(file, output, steps=steps, seed=seed)
    typer.echo(f"{output}: {pixels.shape[1]}x{pixels.shape[0]}")


# --- codecs ---------------------------------------------------------------------


@app.command("codecs")
def codecs_table() -> None:
    """List the base and full codecs: family, rate knob and whether each is usable here."""
    from . import registry
    from .codecs import describe_codecs

    described = describe_codecs(registry.factories("codec")) + describe_codecs(registry.factories("full_codec"), family="full")
    header = ("codec", "family", "quality", "better", "-q means", "status")
    rows = [
        (
            codec.name,
            codec.family,
            f"{codec.rate_range[0]:g}..{codec.rate_range[1]:g} {codec.rate_unit}" if codec.rate_range else f"? {codec.rate_unit}",
            "higher" if codec.higher_rate_is_better else "lower",
            codec.rate_meaning or "-",
            "available" if codec.available else f"unavailable: {codec.reason}",
        )
        for codec in described
    ]
    rows += [
        (plugin.name, "plugin", "-", "-", "-", f"broken plugin from {plugin.source}: {plugin.error}")
        for kind in ("codec", "full_codec")
        for plugin in registry.plugins(kind)
        if plugin.factory is None
    ]
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header) - 1)]
    for cells in [header, *rows]:
        typer.echo("  ".join([*(cell.ljust(width) for cell, width in zip(cells, widths)), cells[-1]]))


# --- weights --------------------------------------------------------------------

weights_app = typer.Typer(no_args_is_help=True, help="List, download and verify the weights in weights.lock.", rich_markup_mode=None)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def weights_list() -> None:
    """Every file in weights.lock (and plugins' own locks) and where it was found (not hashed; see `verify`)."""
    from . import weights

    rows = [
        (row.bundle, row.path, "?" if row.size is None else str(row.size), row.license, found[0] if found else "missing")
        for row in weights.all_rows()
        for found in [weights.locate(row)]
    ]
    header = ("bundle", "path", "size", "licence", "found")
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    for cells in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())


@weights_app.command("fetch")
def weights_fetch(bundle: Optional[str] = typer.Argument(None, help="Bundle to fetch (default: all).")) -> None:
    """Download what is missing (repo, cache, mirror, then upstream) and check it against the lock."""
    from . import weights

    for row, path in weights.fetch(bundle):
        typer.echo(f"{row.bundle}/{row.path}: {path}")


@weights_app.command("verify")
def weights_verify(bundle: Optional[str] = typer.Argument(None, help="Bundle to verify (default: all).")) -> None:
    """Hash every file found locally; exits 1 if one is present and wrong, or required and absent (optional ones may be absent)."""
    from . import weights

    results = weights.verify(bundle)
    for row, status in results:
        where = f" ({status.where}: {status.location})" if status.location else ""
        kind = "required" if row.required else "optional"
        typer.echo(f"{status.label}  {row.bundle}/{row.path} [{kind}]{where}: {status.detail}")
    failed = sum(not status.ok for _, status in results)
    absent = sum(status.missing and status.ok for _, status in results)
    typer.echo(f"{len(results) - failed - absent} ok, {absent} optional absent, {failed} failed")
    if failed:
        raise typer.Exit(1)


# --- training -------------------------------------------------------------------


@app.command()
def train(
    codec: str = typer.Option("jpeg", "--codec", help="Base codec family to train for."),
    data: list[Path] = typer.Option(..., "--data", help="Training image folders (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoint, log and bundle; resumes if present."),
    val: Optional[list[Path]] = typer.Option(None, "--val", help="Validation image folders (repeatable)."),
    steps: int = typer.Option(100_000, help="Stop at this optimiser step."),
    minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this much wall time."),
    batch: int = typer.Option(16), crop: int = typer.Option(128), lr: float = typer.Option(2e-4),
    warmup: int = typer.Option(500, help="Optimiser steps of linear learning-rate warm-up."),
    cooldown: int = typer.Option(0, min=0, help="The last this many steps before --steps, the learning rate falls linearly to zero."),
    val_every: int = typer.Option(1000, "--val-every", help="Validate (and write the bundle) every this many steps."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."), seed: int = typer.Option(0),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from this bundle when OUT has no checkpoint."),
    refine_channels: Optional[int] = typer.Option(
        None, "--refine-channels", help="Give the model a full-resolution refinement stage of this width (also grows an --init-from bundle).",
    ),
    refine_blocks: Optional[int] = typer.Option(
        None, "--refine-blocks", min=0, help="Residual blocks in the refinement stage (more, or a wider --refine-channels, grows an --init-from bundle).",
    ),
    mid_blocks: Optional[int] = typer.Option(None, "--mid-blocks", min=1, help="Residual blocks at the lowest resolution (more grows an --init-from bundle)."),
    schedule_steps: Optional[int] = typer.Option(
        None, "--schedule-steps", help="Sample the late-start span in this many steps (the last is the realism end).",
    ),
    adversarial: bool = typer.Option(
        False, "--adversarial", help="Train the steps after the first against a patch discriminator (the realism end).",
    ),
    adversarial_weight: float = typer.Option(0.5, "--adversarial-weight", help="Scale of the adaptive adversarial weight."),
    fine_mse_weight: float = typer.Option(
        0.25, "--fine-mse-weight", help="Weight of the full-band MSE beside the coarse one in the realism steps (lower: more texture).",
    ),
    energy_weight: float = typer.Option(1.0, "--energy-weight", help="Weight of the local fine-band energy term in the realism steps (0: off)."),
    energy_chroma_weight: float = typer.Option(0.0, "--energy-chroma-weight", help="Add the energy term on Cb and Cr, each weighing as the luma at 1.0 (0: luma alone)."),
    patch_distribution_weight: float = typer.Option(
        0.0, "--patch-distribution-weight", help="Weight of the patch-distribution (sliced Wasserstein) texture term in the realism steps (0: off).",
    ),
    patch_distribution_levels: int = typer.Option(2, "--patch-distribution-levels", min=1, help="Laplacian bands (finest first) the patch-distribution term compares."),
    patch_distribution_ycbcr: bool = typer.Option(
        False, "--patch-distribution-ycbcr", help="Compare patches in luma and chroma, each at unit spread, not in R, G and B.",
    ),
    fidelity_share: float = typer.Option(0.25, "--fidelity-share", min=0.0, max=1.0, help="Share of each adversarial batch trained as the fidelity end (first step, MSE)."),
    first_step_network: bool = typer.Option(False, "--first-step-network", help="Train the first step's own network (the fidelity end) alone; the --init-from bundle's later steps stay."),
    first_step_share: float = typer.Option(0.25, "--first-step-share", min=0.0, max=1.0, help="Without --adversarial: share of samples at the first sampling step."),
) -> None:
    """Train (or resume) a DIRAC enhancer for a base codec."""
    from .train.adversarial import AdversarialOptions
    from .train.dirac import TrainOptions, train as run_training

    model = _dirac_model_shape(init_from, first_step_network, refine_channels=refine_channels, refine_blocks=refine_blocks, mid_blocks=mid_blocks)
    options = TrainOptions(
        codec=codec, data=data, out=out, val=val, steps=steps, minutes=minutes,
        batch=batch, crop=crop, lr=lr, warmup=warmup, cooldown=cooldown, val_every=val_every, device=device, seed=seed, init_from=init_from, model=model,
        start_step_share=first_step_share, first_step_network=first_step_network, schedule_steps=schedule_steps, adversarial=AdversarialOptions(
            weight=adversarial_weight, fine_mse_weight=fine_mse_weight, energy_weight=energy_weight, energy_chroma_weight=energy_chroma_weight,
            patch_distribution_weight=patch_distribution_weight, patch_distribution_levels=patch_distribution_levels,
            patch_distribution_ycbcr=patch_distribution_ycbcr, fidelity_share=fidelity_share,
        ) if adversarial else None,
    )
    bundle = run_training(options, log=typer.echo)
    typer.echo(f"bundle: {bundle}")


def _dirac_model_shape(init_from: Optional[Path], first_step_network: bool, **changes: Optional[int]):
    """The model `enhance train` asks for: the network it trains in the --init-from bundle (or the
    default) with the given changes; None when nothing is asked, so a resume or a plain
    continuation keeps its own."""
    from .enhancers.dirac import DiracConfig, DiracUNetConfig
    from .train.dirac import trained_network

    asked = {key: value for key, value in changes.items() if value is not None}
    if not asked:
        return None
    base = trained_network(DiracConfig.load(init_from / "config.json"), first_step_network) if init_from else DiracUNetConfig()
    return replace(base, **asked)


@app.command()
def thresholds(
    bundle: Path = typer.Argument(..., help="Bundle directory whose config.json receives the table."),
    data: list[Path] = typer.Option(..., "--data", help="Training image folders (repeatable)."),
    percentile: float = typer.Option(99.5, help="Clip at this high percentile (and its low mirror)."),
    crops: int = typer.Option(256, help="Crops measured per rate."),
) -> None:
    """Measure rate-dependent residual thresholds on training data and store them in a bundle."""
    from .train.thresholds import write_thresholds

    table = write_thresholds(bundle, data, percentile=percentile, crops_per_rate=crops)
    for rate, low, high in zip(table.rates, table.lower, table.upper):
        typer.echo(f"rate {rate:g}: " + "  ".join(f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(low, high)))


# --- archive runs, viewer hook, thumbnailer ---------------------------------------
# Subprocesses (tests, viewers) can point these commands at another DIRAC bundle with
# --model DIR or $ENHANCE_DIRAC_JPEG.

_STEPS_HELP = "Sampling steps (default: the model's)."
_CONSISTENT_HELP = "Project the result onto the JPEG file's quantization constraint set."
_MODEL_HELP = "DIRAC bundle directory to use instead of the shipped JPEG model (also $ENHANCE_DIRAC_JPEG)."
_ENHANCER_HELP = "Enhancer to use: dirac (built in) or one a plugin registers."
_ENGINE_HELP = "local (this machine) or ray (a Ray cluster; pip install 'enhance[ray]')."
_ADDRESS_HELP = "With --engine ray: the cluster, auto or HOST:PORT (default: $RAY_ADDRESS, else a new local one)."
_NUM_CPUS_HELP = "With --engine ray: CPUs per actor, and its torch threads (default 1)."
_NUM_GPUS_HELP = "With --engine ray: GPUs per actor (default 0)."


def _run_progress(stack):
    """(per-file callback, per-tile callback): a rich bar with ETA, and one for the tiles of a large
    image, on a terminal; otherwise one JSON line per file on stdout and no tile progress."""
    import json

    if not sys.stderr.isatty():
        def report_line(result, completed, total):
            typer.echo(json.dumps({"completed": completed, "total": total, **result.to_dict()}))
            sys.stdout.flush()

        return report_line, None

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = stack.enter_context(
        Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
        )
    )
    bar = progress.add_task("enhancing", total=None)
    tiles = progress.add_task("tiles", total=None, visible=False)

    def advance(result, completed, total):
        progress.update(bar, total=total, completed=completed)
        progress.update(tiles, visible=False)
        if result.status == "failed":
            progress.console.print(f"[red]failed[/red] {result.reason}", highlight=False)

    def advance_tiles(task, done, total):
        progress.update(tiles, description=f"  tiles of {task.input.name}", total=total, completed=done, visible=done < total)

    return advance, advance_tiles


def _stop_on_sigterm(stack) -> list[int]:
    """SIGTERM stops a run as Ctrl-C does (what was done is printed and reported); returns [signal] once one came."""
    import signal

    received: list[int] = []

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    stack.callback(signal.signal, signal.SIGTERM, previous)
    return received


@app.command("train-latent")
def train_latent(
    model: str = typer.Argument(..., help="What to train: prior, or a plugin's trainer (latent-diffusion, perco)."),
    data: list[Path] = typer.Option(..., "--data", help="Training image folders (repeatable)."),
    every: int = typer.Option(1, "--every", min=1, help="Train on every Nth image of each --data folder (a subset that keeps each folder's share)."),
    out: Path = typer.Option(..., "--out", help="Run directory: checkpoint, log and bundle; resumes if present."),
    val: Optional[list[Path]] = typer.Option(None, "--val", help="Validation image folders (repeatable)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Latent cache folder (default: OUT/../latents-AUTOENCODER)."),
    prior: Optional[Path] = typer.Option(None, "--prior", help="Prior bundle folder the codec is built on."),
    autoencoder: str = typer.Option("taef2", "--autoencoder"),
    steps: int = typer.Option(100_000, help="Stop at this optimiser step."),
    minutes: Optional[float] = typer.Option(None, help="Stop (with a checkpoint) after this much wall time."),
    batch: int = typer.Option(16),
    crop: int = typer.Option(32, help="Latent crop side (x8 pixels for TAEF2)."),
    lr: float = typer.Option(2e-4),
    warmup: int = typer.Option(500, help="Optimiser steps of linear learning-rate warm-up."),
    cooldown: int = typer.Option(0, min=0, help="The last this many steps before --steps, the learning rate falls linearly to zero."),
    val_every: int = typer.Option(1000, "--val-every", help="Validate (and write the bundle) every this many steps."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    seed: int = typer.Option(0),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from this bundle when OUT has no checkpoint."),
    config: Optional[Path] = typer.Option(None, "--config", help="The model's config file (a codec.json or perco.json) in place of the defaults."),
    option: Optional[list[str]] = typer.Option(None, "--option", "-o", help="A trainer's own setting, KEY=VALUE (repeatable)."),
) -> None:
    """Train (or resume) a model over cached latents: the latent prior, or a latent codec's networks."""
    from .train.latent_request import LatentTrainingRequest, cached_latents, train_latent_model
    from .train.trainer import TrainerOptions

    cache = cache or out.parent / f"latents-{autoencoder}"
    request = LatentTrainingRequest(
        latent_files=cached_latents(data, cache, autoencoder, every=every, log=typer.echo),
        val_files=cached_latents(val or [], cache.with_name(cache.name + "-val"), autoencoder, log=typer.echo),
        autoencoder=autoencoder, prior=prior, crop=crop, batch=batch, seed=seed, init_from=init_from, config=config,
        options=_key_values(option or [], "--option"),
    )
    options = TrainerOptions(
        out=out, steps=steps, minutes=minutes, lr=lr, warmup=warmup, cooldown=cooldown, val_every=val_every, device=device, seed=seed,
    )
    typer.echo(f"bundle: {train_latent_model(model, request, options, log=typer.echo)}")


@app.command("run")
def run_command(
    inputs: list[Path] = typer.Argument(..., help="JPEG files or folders (searched recursively)."),
    outdir: Path = typer.Option(..., "-o", "--outdir", help="Output folder; each input folder's tree is mirrored under it."),
    glob: Optional[list[str]] = typer.Option(None, "--glob", help="File name pattern for folders, any case (repeatable; default: *.jpg *.jpeg *.jpe *.jfif)."),
    output_format: str = typer.Option("png", "-f", "--format", help="png, webp (lossless), jpeg (quality 95, 4:4:4) or tiff."),
    suffix: str = typer.Option("", help="Appended to each output's stem, e.g. _enhanced."),
    steps: Optional[int] = typer.Option(None, help=_STEPS_HELP),
    seed: int = typer.Option(0, help="Sampling seed."),
    consistent: bool = typer.Option(False, "--consistent/--no-consistent", help=_CONSISTENT_HELP),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
    enhancer: str = typer.Option("dirac", "--enhancer", help=_ENHANCER_HELP),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    tile: Optional[int] = typer.Option(None, help="Tile size in pixels, a multiple of 16 (bounds memory)."),
    jobs: Optional[int] = typer.Option(
        None, min=1, help="Worker processes (default 1), each with its own model and cpu_count/jobs torch threads; with --engine ray, actors (default: the cluster's CPUs / --num-cpus).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Re-enhance outputs that exist (inputs are never written)."),
    max_megapixels: Optional[float] = typer.Option(None, help="Refuse larger images (decompression-bomb guard; default $ENHANCE_MAX_MEGAPIXELS, else 150)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the summary as JSON to this file."),
    engine: str = typer.Option("local", "--engine", help=_ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
    num_cpus: Optional[float] = typer.Option(None, "--num-cpus", min=0, help=_NUM_CPUS_HELP),
    num_gpus: Optional[float] = typer.Option(None, "--num-gpus", min=0, help=_NUM_GPUS_HELP),
) -> None:
    """Enhance JPEG archives into OUTDIR; reruns skip finished files. Exits 1 if any file failed."""
    from contextlib import ExitStack

    from .engines import make_engine
    from .runs import RunInterrupted, run

    chosen = make_engine(engine, address=address, jobs=jobs, num_cpus=num_cpus, num_gpus=num_gpus)

    with ExitStack() as stack:
        received = _stop_on_sigterm(stack)
        files, tiles = _run_progress(stack)
        try:
            summary = run(
                inputs, outdir, glob=glob, output_format=output_format, suffix=suffix, steps=steps, seed=seed,
                consistent=consistent, model=model, enhancer_name=enhancer, device=device, tile=tile, jobs=jobs or 1,
                overwrite=overwrite, max_pixels=None if max_megapixels is None else int(max_megapixels * 1e6),
                report_path=report, progress_callback=files, tile_callback=tiles, engine=chosen,
            )
        except RunInterrupted as stopped:
            summary = stopped.summary
    typer.echo(summary.line(), err=True)
    if summary.interrupted:
        raise typer.Exit(128 + (received[0] if received else 2))  # 130 for Ctrl-C, 143 for SIGTERM
    if not summary.ok:
        raise typer.Exit(1)


@app.command("decode-enhanced")
def decode_enhanced(
    file: Path = typer.Argument(..., help="JPEG file."),
    output: str = typer.Option("-", "-o", "--output", help="PNG file to write, or - for stdout."),
    steps: Optional[int] = typer.Option(None, help=_STEPS_HELP),
    seed: int = typer.Option(0, help="Sampling seed."),
    consistent: bool = typer.Option(False, "--consistent/--no-consistent", help=_CONSISTENT_HELP),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
    enhancer: str = typer.Option("dirac", "--enhancer", help=_ENHANCER_HELP),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    tile: Optional[int] = typer.Option(None, help="Tile size in pixels, a multiple of 16."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Use and fill the decoded-image cache."),
) -> None:
    """Decode a JPEG enhanced, as PNG (for viewers and ImageMagick-style delegates)."""
    from .outputs import refuse_overwrite, write_output
    from .viewer import enhanced_png

    refuse_overwrite(file, output)
    png = enhanced_png(
        file, steps=steps, seed=seed, consistent=consistent, model=model, enhancer_name=enhancer, device=device, tile=tile, cache=cache
    )
    if output == "-":
        stdout = typer.get_binary_stream("stdout")
        stdout.write(png)
        stdout.flush()
    else:
        write_output(Path(output), png, source=file)


@app.command()
def thumbnail(
    input_file: Path = typer.Argument(..., metavar="INPUT", help="JPEG file."),
    output_file: Path = typer.Argument(..., metavar="OUTPUT", help="PNG thumbnail to write."),
    size: int = typer.Option(256, "-s", "--size", min=1, help="Largest side in pixels."),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
) -> None:
    """Write an enhanced PNG thumbnail (the XDG thumbnailer's command)."""
    from .viewer import write_thumbnail

    write_thumbnail(input_file, output_file, size, model=model)


thumbnailer_app = typer.Typer(
    no_args_is_help=True, help="The XDG thumbnailer that shows enhanced JPEGs in file managers.", rich_markup_mode=None
)
app.add_typer(thumbnailer_app, name="thumbnailer")


def _enhance_executable() -> str:
    # The entry names the running `enhance` by absolute path, so file managers find
    # it even when it lives in a virtual environment outside their PATH.
    invoked = Path(sys.argv[0])
    if invoked.name == "enhance" and invoked.is_file():
        return str(invoked.absolute())
    import shutil

    return shutil.which("enhance") or "enhance"


@thumbnailer_app.command("install")
def thumbnailer_install(
    data_home: Optional[Path] = typer.Option(None, help="Default: $XDG_DATA_HOME, else ~/.local/share."),
) -> None:
    """Install enhance.thumbnailer for this user (into DATA_HOME/thumbnailers)."""
    from .viewer import install_thumbnailer

    typer.echo(install_thumbnailer(data_home=data_home, executable=_enhance_executable()))


# --- compare ----------------------------------------------------------------------


def _number_list(text: str, option: str) -> list[int | float]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise typer.BadParameter(f"{option} needs comma-separated numbers, e.g. 10,20,40")
    return [_quality(part) for part in parts]


def _key_values(pairs: list[str], option: str) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise typer.BadParameter(f"{option} {pair!r}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


def _codec_options(pairs: list[str] | None) -> dict:
    options: dict = {}
    for key, value in _key_values(pairs or [], "--codec-option").items():
        try:
            options[key] = _quality(value)
        except typer.BadParameter:
            options[key] = value
    return options


@app.command("compare")
def compare_command(
    dataset: list[Path] = typer.Argument(..., help="Image folders or files (searched recursively)."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the JSON, CSV, plots, report and cache."),
    codec: str = typer.Option("jpeg", "-c", "--codec", help="Base codec or full generative codec (see `enhance codecs`)."),
    quality: str = typer.Option(..., "-q", "--quality", help="Comma-separated qualities on the codec's scale, e.g. 5,10,20,40."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Comma-separated step counts, e.g. 1,4,20 (default: the model's)."),
    codec_option: Optional[list[str]] = typer.Option(None, "-O", "--codec-option", help="KEY=VALUE for the codec (repeatable), e.g. subsampling=4:4:4."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric names (default: every one whose weights are here)."),
    anchor: Optional[str] = typer.Option(None, "--anchor", help="Configuration the report's BD-rates are against (default: the base codec)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    consistent: bool = typer.Option(False, "--consistent/--no-consistent", help=_CONSISTENT_HELP),
    model: Optional[Path] = typer.Option(None, "--model", help=_MODEL_HELP),
    enhancer: str = typer.Option("dirac", "--enhancer", help=_ENHANCER_HELP),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw the plots, crop sheets and HTML report."),
    engine: str = typer.Option("local", "--engine", help=_ENGINE_HELP + " Ray runs the per-image pass, into the same cache."),
    address: Optional[str] = typer.Option(None, "--address", help=_ADDRESS_HELP),
    jobs: Optional[int] = typer.Option(None, "--jobs", min=1, help="With --engine ray: actors (default: the cluster's CPUs / --num-cpus)."),
    num_cpus: Optional[float] = typer.Option(None, "--num-cpus", min=0, help=_NUM_CPUS_HELP),
    num_gpus: Optional[float] = typer.Option(None, "--num-gpus", min=0, help=_NUM_GPUS_HELP),
) -> None:
    """Compare a codec with and without the enhancer: CompressAI JSON, per-image CSV, BD-rates, plots, report."""
    from .comparison import compare, file_stem
    from .engines import make_engine

    if engine == "local" and jobs is not None:
        fail("--jobs needs --engine ray (a local compare runs in this process)")
    chosen = make_engine(engine, address=address, jobs=jobs, num_cpus=num_cpus, num_gpus=num_gpus)

    def progress(done: int, total: int, label: str) -> None:
        typer.echo(f"[{done}/{total}] {label}" if label else f"[{done}/{total}] scoring and writing", err=True)

    comparison = compare(
        dataset, output, codec=codec, qualities=_number_list(quality, "--quality"),
        steps=_number_list(steps, "--steps") if steps else None, codec_options=_codec_options(codec_option),
        metrics=[name.strip() for name in metrics.split(",") if name.strip()] if metrics else None,
        anchor=anchor, seed=seed, consistent=consistent, model=model, enhancer_name=enhancer, device=device, figures=figures,
        progress=progress, engine=chosen,
    )
    bd = comparison.bd
    for name in comparison.results:
        entries = bd["pairs"][bd["anchor"]][name]
        summary = ", ".join(
            f"{metric} {entries[metric]['bd-rate']:+.2f}%" for metric in bd["metrics"] if entries[metric]["bd-rate"] is not None
        )
        typer.echo(f"{name}: {comparison.output / (file_stem(name) + '.json')}" + (f" (BD-rate vs {bd['anchor']}: {summary})" if name != bd["anchor"] and summary else ""))
    for note in comparison.notes:
        typer.echo(f"note: {note}", err=True)
    for label, reason in comparison.skipped:
        typer.echo(f"skipped {label}: {reason}", err=True)
    if "report.html" in comparison.files:
        typer.echo(f"report: {comparison.files['report.html']}")


def main() -> None:
    try:
        app()
    except EnhanceError as error:
        typer.echo(f"enhance: {error}", err=True)
        sys.exit(2)
