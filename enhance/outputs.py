"""Where outputs go, safely: never over an input, checked before any work, and clean errors when writing fails.

- `refuse_overwrite(source, target)`: no command ever writes over its input (same path,
  a symlink to it, or a hard link of it).
- `check_output_folder` and `check_report_path`: an output folder that is a file, or
  cannot be written, and a `--report` path that is a folder, stop a run before any image
  is enhanced, with a one-line reason.
- `write_output`: `enhance.image.write_atomic`, with a full disk or a read-only folder
  reported as one line naming the file instead of a traceback.
- Records (`record_path`, `write_record`, `read_record`, `is_output_record`): a small
  hidden sidecar beside each output of `enhance run` saying which settings made it, so a
  rerun skips only outputs made with the same settings, and never takes its own outputs
  for inputs.
- Claims (`claim`, `release`): a hidden file beside an output that a running process
  is making, so two runs over the same folders share the work instead of both doing it,
  and never remove each other's temporary files.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
from pathlib import Path

from .errors import BadInput, EnhanceError
from .image import write_atomic

RECORD_FORMAT = "enhance.output-record"
RECORD_VERSION = 1
RECORD_SUFFIX = ".enhance.json"
CLAIM_SUFFIX = ".enhance-claim"


# --- never over an input ------------------------------------------------------------


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether `a` and `b` name one file (after symlinks, or as hard links); never raises."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwrite(source: Path | str, target: Path | str) -> None:
    """BadInput when writing `target` would write over the input `source`."""
    if str(target) != "-" and same_file(source, target):
        raise BadInput(f"{target}: refusing to write over the input file {source}")


# --- checked before any work --------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_output_folder(folder: Path | str, *, what: str = "the output folder") -> None:
    """EnhanceError unless `folder` is, or can be created as, a writable folder; creates nothing."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        where = "is" if existing == Path(os.path.abspath(folder)) else f"is inside {existing}, which is"
        raise EnhanceError(f"{folder}: {what} {where} a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EnhanceError(f"{folder}: {what} cannot be written ({existing} is not writable)")


def probe_output_folder(folder: Path | str, *, what: str = "the output folder") -> None:
    """Creates `folder` and writes and removes a small file there; EnhanceError when that fails."""
    folder = Path(folder)
    check_output_folder(folder, what=what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / f".enhance-probe-{os.getpid()}-{secrets.token_hex(4)}", b"probe")
    except OSError as error:
        raise EnhanceError(f"{folder}: {what} cannot be written ({error.strerror or error})") from None
    finally:
        for probe in folder.glob(f".enhance-probe-{os.getpid()}-*"):
            probe.unlink(missing_ok=True)


def check_report_path(path: Path | str) -> None:
    """EnhanceError when `--report PATH` names a folder, or a place that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise EnhanceError(f"--report {path}: is a folder; give a file name, e.g. {path / 'report.json'}")
    check_output_folder(path.parent if str(path.parent) else Path("."), what="the report's folder")


# --- writing --------------------------------------------------------------------------


def write_output(path: Path | str, data: bytes, *, source: Path | str | None = None) -> Path:
    """Writes `data` to `path` atomically (never over `source`); a write that fails is one EnhanceError."""
    path = Path(path)
    if source is not None:
        refuse_overwrite(source, path)
    try:
        write_atomic(path, data)
    except IsADirectoryError:
        raise EnhanceError(f"{path}: is a folder; give a file name") from None
    except OSError as error:
        raise EnhanceError(f"{path}: cannot write here ({error.strerror or error})") from None
    return path
