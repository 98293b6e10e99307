"""Archive runs: enhance every JPEG under some folders into a mirrored tree, safely.

- Discovery: inputs are files or folders; folders are walked recursively and their
  files matched by name against `--glob` patterns (case-insensitive; JPEG extensions by
  default). Hidden files and folders, and the output folder itself, are not entered.
- Naming: OUTDIR / (path relative to the input folder) with the stem, the suffix and
  the output format's extension. An output that would be an input, or the output of
  another input, fails that input instead of overwriting anything; outputs that would
  replace their own inputs stop the run before any work.
- Safety: outputs are written through `enhance.image.write_atomic` (temporary file in
  the destination folder, fsync, rename), so an output that exists is complete. Beside
  each, a record (`enhance.outputs`) says which settings made it: a rerun skips outputs
  made with the same settings (a run killed with kill -9 resumes where it stopped),
  makes again those made with others, and removes the temporary files a killed run left
  for the outputs it plans; `overwrite` re-enhances existing outputs, and never touches
  inputs. Recorded outputs under OUTDIR are never inputs. Each output is claimed while it
  is made, so concurrent runs over the same folders share the work.
- Bad input fails only its own file, with the reason; the run goes on.
- Each file is enhanced by `enhance.enhance_one` (the one road for a single image): only
  JPEG files, since the JPEG model is conditioned on the quality estimated from the
  file's quantization tables, which a PNG or WebP no longer has. Other images fail with
  that reason rather than being enhanced at a guessed rate.
- `jobs`: with 1 (the default) files are processed in this process and torch uses every
  core for each image. With N > 1, N worker processes each load the model once and
  get cpu_count // N torch threads (at least 1), so the workers together never
  oversubscribe the cores: on 2 cores, `--jobs 2` runs two single-threaded workers.
  Workers pay off for many small files, where per-file decoding, encoding and Python
  overhead do not parallelise inside torch.
"""

from __future__ import annotations

import fnmatch
import json
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from . import outputs
from .enhance_one import DEFAULT_ENHANCER, check_options, enhance_bytes, enhancer_identity, load_enhancer, model_setting
from .errors import BadInput, EnhanceError
from .image import (
    DEFAULT_MAX_PIXELS, OUTPUT_FORMATS, encode_image, output_format_for, read_file, save_image, temporary_target, write_atomic,
)

DEFAULT_GLOBS = ("*.jpg", "*.jpeg", "*.jpe", "*.jfif")

REPORT_FORMAT = "enhance.run-report"
REPORT_VERSION = 1


# --- one file -----------------------------------------------------------------------


def enhance_file(
    input_path: Path | str,
    output_path: Path | str,
    *,
    output_format: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    enhancer=None,
    enhancer_name: str = DEFAULT_ENHANCER,
    model: Path | str | None = None,
    device: str | None = None,
    tile: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """Enhances one JPEG into `output_path` (format from its extension unless given), keeping EXIF, ICC and XMP."""
    output_format = output_format or output_format_for(output_path)
    if outputs.same_file(output_path, input_path):
        raise BadInput(f"{output_path}: the output would overwrite its input")
    data = read_file(input_path)
    if enhancer is None:
        enhancer = load_enhancer("jpeg", model=model, name=enhancer_name, device=device, tile=tile, steps=steps)
    enhanced = enhance_bytes(data, path=input_path, enhancer=enhancer, steps=steps, seed=seed, consistent=consistent, max_pixels=max_pixels)
    return save_image(output_path, enhanced.pixels, enhanced.metadata, output_format, greyscale=enhanced.greyscale)


# --- planning ---------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    input: Path
    output: Path


@dataclass(frozen=True)
class FileResult:
    input: str
    output: str | None
    status: str  # "done", "skipped" (the output exists) or "failed"
    reason: str | None = None
    seconds: float = 0.0
    note: str | None = None
    redone: str | None = None  # why an existing output was made again (its settings differed)

    def to_dict(self) -> dict:
        fields = {key: value for key, value in asdict(self).items() if value is not None}
        fields["seconds"] = round(self.seconds, 3)
        return fields


def _matches(name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for pattern in globs)


def _real(path: Path) -> Path:
    # os.path.realpath never raises: a symlink loop stays a path, and reading it later
    # fails that one file with its reason (Path.resolve raises RuntimeError on loops).
    return Path(os.path.realpath(path))


def _walk(folder: Path, globs: tuple[str, ...], excluded: Path) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(folder):
        here = Path(directory)
        subdirectories[:] = sorted(
            name for name in subdirectories if not name.startswith(".") and _real(here / name) != excluded
        )
        inside = _is_within(_real(here), excluded)
        found.extend(
            here / name for name in sorted(files)
            if not name.startswith(".") and _matches(name, globs) and not (inside and outputs.is_recorded_output(here / name))
        )
    return found


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(
    inputs: list[Path | str],
    outdir: Path | str,
    *,
    globs: tuple[str, ...] = DEFAULT_GLOBS,
    output_format: str = "png",
    suffix: str = "",
) -> tuple[list[Task], list[FileResult]]:
    """Every (input, output) pair, and the inputs decided before any work: missing or an unsafe output
    (failed), or an output of an earlier run named as an input (skipped)."""
    if output_format not in OUTPUT_FORMATS:
        raise EnhanceError(f"unknown output format {output_format!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    if "/" in suffix or os.sep in suffix:
        raise EnhanceError(f"the suffix {suffix!r} must not contain a path separator")
    outdir = Path(outdir)
    excluded = _real(outdir)
    extension = OUTPUT_FORMATS[output_format]
    candidates: list[Task] = []
    failures: list[FileResult] = []
    for given in map(Path, inputs):
        if given.is_dir():
            for path in _walk(given, globs, excluded):
                relative = path.relative_to(given)
                candidates.append(Task(path, outdir / relative.parent / f"{path.stem}{suffix}{extension}"))
        elif _is_within(_real(given), excluded) and outputs.is_recorded_output(given):
            failures.append(FileResult(str(given), None, "skipped", f"{given}: an output of an earlier run under OUTDIR; never an input"))
        elif given.exists() or os.path.lexists(given):  # a symlink loop is taken, to fail with its reason
            candidates.append(Task(given, outdir / f"{given.stem}{suffix}{extension}"))
        else:
            failures.append(FileResult(str(given), None, "failed", f"{given}: no such file or folder"))

    input_files = {_real(task.input) for task in candidates}
    claimed: dict[Path, Path] = {}
    tasks: list[Task] = []
    for task in candidates:
        target = _real(task.output)
        if target in input_files:
            failures.append(FileResult(str(task.input), str(task.output), "failed", f"{task.output}: the output would overwrite an input"))
        elif target in claimed:
            if claimed[target] != _real(task.input):
                failures.append(
                    FileResult(str(task.input), str(task.output), "failed", f"{task.output}: already the output of {claimed[target]}")
                )
        else:
            claimed[target] = _real(task.input)
            tasks.append(task)
    return tasks, failures


def remove_stale_temporaries(tasks: list[Task]) -> int:
    """Removes temporary files a killed run left for any of these outputs; returns how many."""
    planned: dict[Path, set[str]] = {}
    for task in tasks:
        # Another live run's temporaries are its own: only outputs nobody else holds are cleaned.
        if outputs.held_by_another(task.output) is None:
            outputs.remove_dead_claim(task.output)
            planned.setdefault(task.output.parent, set()).update({task.output.name, outputs.record_path(task.output).name})
    removed = 0
    for directory, names in planned.items():
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if temporary_target(entry.name) in names:
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


# --- running ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    output_format: str = "png"
    steps: int | None = None
    seed: int = 0
    consistent: bool = False
    model: str | None = None
    device: str | None = None
    tile: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    enhancer: str = DEFAULT_ENHANCER
    model_identity: str | None = None  # a hash of the model's files, when known without loading it

    def record(self) -> dict:
        """What made an output, as its record keeps it: a rerun skips only outputs made with all of these the same."""
        return {
            "enhancer": self.enhancer, "model": self.model_identity or self.model, "steps": self.steps,
            "seed": self.seed, "consistent": self.consistent, "format": self.output_format,
        }

    def load_enhancer(self):
        return load_enhancer("jpeg", model=self.model, name=self.enhancer, device=self.device, tile=self.tile, steps=self.steps)


@dataclass
class RunSummary:
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    started: str = ""
    settings: Settings = field(default_factory=Settings)
    interrupted: bool = False  # stopped by Ctrl-C or SIGTERM; `not_started` files were never begun
    not_started: int = 0

    def _with(self, status: str) -> list[FileResult]:
        return [result for result in self.results if result.status == status]

    @property
    def done(self) -> list[FileResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[FileResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[FileResult]:
        return self._with("failed")

    @property
    def redone(self) -> list[FileResult]:
        """Done files whose existing output was made again because its settings differed."""
        return [result for result in self.done if result.redone]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def line(self) -> str:
        redone = f" ({len(self.redone)} redone: made before with other settings)" if self.redone else ""
        line = f"done {len(self.done)}{redone}, skipped {len(self.skipped)}, failed {len(self.failed)} in {self.seconds:.1f} s"
        if self.interrupted:
            line += f"; interrupted with {self.not_started} not done: rerun the same command to resume (finished outputs are kept)"
        return line

    def to_dict(self) -> dict:
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "counts": {"done": len(self.done), "skipped": len(self.skipped), "failed": len(self.failed), "redone": len(self.redone)},
            "settings": asdict(self.settings),
            **({"interrupted": True, "not_started": self.not_started} if self.interrupted else {}),
            "files": [result.to_dict() for result in self.results],
        }


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM; `summary` holds what was done (the report, if asked for, is written)."""

    def __init__(self, summary: RunSummary):
        super().__init__(summary.line())
        self.summary = summary


ProgressCallback = Callable[[FileResult, int, int], None]
# (the file being enhanced, tiles done, tiles in all): called after each tile of an image of several tiles.
TileCallback = Callable[[Task, int, int], None]

# An engine enhances the planned tasks whose output is still to be written, calling
# `record` once per task with its result (in any order), by way of `process_task`. It
# returns when every task is recorded, or raises for an error that concerns the whole
# run. The local engine is `jobs` below; `enhance.engines.ray_engine.RayEngine` is another.
# Planning, skipping, the summary and the report stay in `run`, whatever the engine.
Engine = Callable[[list[Task], Settings, Callable[[FileResult], None]], None]


def process_task(task: Task, settings: Settings, enhancer) -> FileResult:
    """Enhances one planned file; a reason this file cannot be done fails it alone."""
    start = time.perf_counter()
    try:
        enhanced = enhance_bytes(
            read_file(task.input), path=task.input, enhancer=enhancer, steps=settings.steps, seed=settings.seed,
            consistent=settings.consistent, max_pixels=settings.max_pixels,
        )
        data = encode_image(enhanced.pixels, enhanced.metadata, settings.output_format, greyscale=enhanced.greyscale)
        write_atomic(task.output, data)
        outputs.write_record(task.output, data, settings.record(), source=task.input)
    except BadInput as error:
        return FileResult(str(task.input), str(task.output), "failed", str(error), time.perf_counter() - start)
    except OSError as error:
        # Writing the output failed (disk full, permissions): this file is not done.
        reason = f"{task.output}: cannot write ({error.strerror or error})"
        return FileResult(str(task.input), str(task.output), "failed", reason, time.perf_counter() - start)
    except MemoryError:
        reason = f"{task.input}: not enough memory to enhance this image (try a smaller --tile)"
        return FileResult(str(task.input), str(task.output), "failed", reason, time.perf_counter() - start)
    return FileResult(str(task.input), str(task.output), "done", None, time.perf_counter() - start, enhanced.note)


def run(
    inputs: list[Path | str],
    outdir: Path | str,
    *,
    glob: tuple[str, ...] | list[str] | None = None,
    output_format: str = "png",
    suffix: str = "",
    steps: int | None = None,
    seed: int = 0,
    consistent: bool = False,
    model: Path | str | None = None,
    enhancer_name: str = DEFAULT_ENHANCER,
    device: str | None = None,
    tile: int | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    report_path: Path | str | None = None,
    progress_callback: ProgressCallback | None = None,
    tile_callback: TileCallback | None = None,
    engine: Engine | None = None,
) -> RunSummary:
    """Enhances every input into OUTDIR; returns (and optionally writes as JSON) what was done, skipped and failed.

    Errors about the whole run (a bad option, an unwritable OUTDIR or report, nothing matched, the
    model) raise before any image is enhanced; a single file's are in its `FileResult`. On
    KeyboardInterrupt (Ctrl-C; the CLI makes SIGTERM one) the report is written and `RunInterrupted` raised;
    `engine` (see `Engine`) replaces `jobs`."""
    _check_destinations(
        outdir, report_path, jobs, device=device, steps=steps, seed=seed, tile=tile, consistent=consistent, output_format=output_format
    )
    start = time.perf_counter()
    settings = Settings(
        output_format=output_format, steps=steps, seed=seed, consistent=consistent, model=model_setting(model, "jpeg"),
        device=device, tile=tile, max_pixels=max_pixels, enhancer=enhancer_name,
        model_identity=enhancer_identity("jpeg", model=model, name=enhancer_name, with_device=False),
    )
    summary = RunSummary(started=datetime.now(timezone.utc).isoformat(timespec="seconds"), settings=settings)
    globs = tuple(glob) if glob else DEFAULT_GLOBS
    tasks, failures = plan(inputs, outdir, globs=globs, output_format=output_format, suffix=suffix)
    _check_plan(inputs, outdir, globs, tasks, failures)
    remove_stale_temporaries(tasks)
    total, redo = len(tasks) + len(failures), {}  # redo: output -> why an existing one is made again

    def record(result: FileResult) -> None:
        if result.status == "done" and result.output in redo:
            result = replace(result, redone=redo[result.output])
        summary.results.append(result)
        if progress_callback is not None:
            progress_callback(result, len(summary.results), total)

    pending = _pending(tasks, overwrite, record, settings, redo, decided=failures)
    try:
        (engine or _local(outdir, jobs, overwrite, tile_callback))(pending, settings, record) if pending else None
    except KeyboardInterrupt:
        summary.interrupted, summary.not_started = True, total - len(summary.results)
        _finish(summary, start, report_path)
        raise RunInterrupted(summary) from None
    _finish(summary, start, report_path)
    return summary


def _local(outdir, jobs: int, overwrite: bool, tile_callback) -> Engine:
    """The local engine: this process (jobs 1) or a pool of worker processes."""
    return lambda pending, settings, record: _execute(
        pending, settings, outdir, jobs, record, recheck=not overwrite, tile_callback=tile_callback
    )


def _execute(pending: list[Task], settings: Settings, outdir, jobs: int, record, *, recheck: bool, tile_callback) -> None:
    if pending and jobs == 1:
        _run_here(pending, settings, outdir, record, recheck=recheck, tile_callback=tile_callback)
    elif pending:
        outputs.probe_output_folder(outdir, what="OUTDIR")
        _run_in_workers(pending, settings, min(jobs, len(pending)), record, recheck=recheck)


def _finish(summary: RunSummary, start: float, report_path: Path | str | None) -> None:
    summary.seconds = time.perf_counter() - start
    if report_path is not None:
        write_report(summary, report_path)


def _check_destinations(outdir: Path | str, report_path: Path | str | None, jobs: int, **options) -> None:
    """Every option is valid, OUTDIR is (or can become) a writable folder and --report a file, before any work."""
    if jobs < 1:
        raise EnhanceError("jobs must be at least 1")
    check_options(**options)
    outputs.check_output_folder(outdir, what="OUTDIR")
    if report_path is not None:
        outputs.check_report_path(report_path)


def _check_plan(inputs, outdir, globs: tuple[str, ...], tasks: list[Task], failures: list[FileResult]) -> None:
    """A run with nothing to do, or whose outputs would replace their own inputs, stops before any work."""
    if not tasks and not failures:
        folders = ", ".join(str(given) for given in inputs)
        raise EnhanceError(
            f"nothing to enhance: no file under {folders} matched --glob {' '.join(globs)} "
            "(names match in any case; hidden files and OUTDIR are not searched)"
        )
    own = [failure for failure in failures if failure.output and outputs.same_file(failure.input, failure.output)]
    if own:
        raise EnhanceError(
            f"{own[0].output}: outputs would replace their own inputs ({len(own)} files; OUTDIR {outdir} holds the inputs "
            "and the output names are theirs): add --suffix, e.g. --suffix _enhanced, or choose another -o"
        )


def _pending(tasks: list[Task], overwrite: bool, record, settings: Settings, redo: dict[str, str], decided=()) -> list[Task]:
    """The tasks still to do, after recording the results `decided` at planning. An existing output made with
    the same settings is skipped (unless `overwrite`); one made with others, or with no record, is made
    again (`redo` says why)."""
    for result in decided:
        record(result)
    pending = []
    wanted = settings.record()
    for task in tasks:
        if not overwrite and task.output.exists():
            made_with = outputs.recorded_settings(task.output)
            if made_with == wanted:
                record(FileResult(str(task.input), str(task.output), "skipped", "the output exists, made with the same settings"))
                continue
            redo[str(task.output)] = outputs.describe_change(made_with, wanted)
        pending.append(task)
    return pending


def _claim_or_skip(task: Task, settings: Settings, recheck: bool) -> FileResult | None:
    """Claims the task's output for this run; a result saying why not when another run holds or just made it."""
    held = outputs.claim(task.output)
    if held is not None:
        return FileResult(str(task.input), str(task.output), "skipped", held)
    if recheck and task.output.exists() and outputs.recorded_settings(task.output) == settings.record():
        outputs.release(task.output)
        return FileResult(str(task.input), str(task.output), "skipped", "made meanwhile by another run with the same settings")
    return None


def _run_here(pending: list[Task], settings: Settings, outdir, record, *, recheck: bool, tile_callback: TileCallback | None) -> None:
    """Enhances `pending` in this process, each output claimed while it is made."""
    from .tiling import reporting_tiles

    enhancer = settings.load_enhancer()
    outputs.probe_output_folder(outdir, what="OUTDIR")
    for task in pending:
        skipped = _claim_or_skip(task, settings, recheck)
        if skipped is not None:
            record(skipped)
            continue
        try:
            tiles = None if tile_callback is None else (lambda done, total, task=task: tile_callback(task, done, total))
            with reporting_tiles(tiles):
                result = process_task(task, settings, enhancer)
        finally:
            outputs.release(task.output)
        record(result)


def write_report(summary: RunSummary, path: Path | str) -> None:
    write_atomic(Path(path), (json.dumps(summary.to_dict(), indent=2) + "\n").encode())


# --- worker processes -------------------------------------------------------------

_worker_state: dict = {}


def _start_worker(settings: Settings, threads: int) -> None:
    import torch

    _die_with_parent()
    torch.set_num_threads(threads)
    _worker_state["settings"] = settings


def _die_with_parent() -> None:
    # A run killed with kill -9 must not leave workers finishing images behind it (their claims
    # died with the run, so a rerun may be making the same outputs): on Linux the kernel kills
    # each worker when the run dies.
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _worker_process(task: Task) -> FileResult:
    # The model loads on the first task rather than in the initializer, so a model
    # error comes back through the future as itself instead of a broken pool.
    settings = _worker_state["settings"]
    if "enhancer" not in _worker_state:
        _worker_state["enhancer"] = settings.load_enhancer()
    return process_task(task, settings, _worker_state["enhancer"])


def _run_in_workers(
    tasks: list[Task], settings: Settings, jobs: int, record: Callable[[FileResult], None], *, recheck: bool = True
) -> None:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    claimed: dict = {}  # future -> its task, whose output this process has claimed

    def finish(future) -> None:
        outputs.release(claimed.pop(future).output)
        record(future.result())

    # spawn, not fork: forking a process whose torch thread pools may already be
    # running can deadlock the children.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_start_worker, initargs=(settings, threads)) as pool:
        # Keep only a few tasks queued per worker so a run stopped early has not
        # handed every file to a worker.
        queue = iter(tasks)
        running = set()
        try:
            for task in queue:
                skipped = _claim_or_skip(task, settings, recheck)
                if skipped is not None:
                    record(skipped)
                    continue
                future = pool.submit(_worker_process, task)
                claimed[future] = task
                running.add(future)
                if len(running) >= 2 * jobs:
                    finished, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in finished:
                        finish(future)
            for future in as_completed(running):
                finish(future)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            for task in claimed.values():
                outputs.release(task.output)
