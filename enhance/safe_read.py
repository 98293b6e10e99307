"""Reading input files safely: regular files only, never more than a size bound.

A folder of photos may hold anything: a FIFO named `a.jpg` (reading it blocks forever),
a symlink to `/dev/zero` (reading it never ends), a symlink loop, a device. Every input
file enhance reads comes through `read_regular_file`, which

- opens without blocking (`O_NONBLOCK`, so a FIFO with no writer does not hang) and
  follows symlinks to what they name;
- refuses anything that is not a regular file (FIFO, socket, device, directory), and
  symlink loops, each with its reason;
- refuses files larger than `max_file_bytes()` before reading them, and never reads
  more than that bound even from a file that grows while it is read.

The bound is `DEFAULT_MAX_FILE_MB` (1024 MiB: far above any real photo, well below what
would exhaust memory), or `$ENHANCE_MAX_FILE_MB`.
"""

from __future__ import annotations

import errno
import math
import os
import stat
from pathlib import Path

from .errors import BadInput, EnhanceError

DEFAULT_MAX_FILE_MB = 1024.0
FILE_ENV_VAR = "ENHANCE_MAX_FILE_MB"
_CHUNK = 1 << 20


def max_file_bytes() -> int:
    """The largest input file read: $ENHANCE_MAX_FILE_MB (MiB), else the default."""
    text = os.environ.get(FILE_ENV_VAR, "").strip()
    if not text:
        return int(DEFAULT_MAX_FILE_MB * (1 << 20))
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = math.nan
    if not (math.isfinite(megabytes) and megabytes > 0):
        raise EnhanceError(f"{FILE_ENV_VAR}={text!r} must be a positive number of MiB")
    return int(megabytes * (1 << 20))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def not_regular_reason(path: Path | str) -> str | None:
    """Why `path` cannot be an input file (without opening it), or None when it is a regular file."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return _open_reason(path, error)
    if stat.S_ISREG(mode):
        return None
    return f"{path}: {_kind(mode)}, not a regular file; only regular files are read"


def _open_reason(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return f"{path}: a symlink loop (too many levels of symbolic links)"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"{path}: a broken symlink (what it names does not exist)"
    return f"{path}: cannot be read ({error.strerror or error})"


def read_regular_file(path: Path | str, limit: int | None = None) -> bytes:
    """The bytes of regular file `path` (symlinks followed); BadInput naming the file for anything else."""
    path = Path(path)
    limit = max_file_bytes() if limit is None else limit
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not an image") from None
    except OSError as error:
        raise BadInput(_open_reason(path, error)) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise BadInput(f"{path}: is a directory, not an image")
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{path}: {_kind(info.st_mode)}, not a regular file; only regular files are read")
        if info.st_size > limit:
            raise BadInput(_too_large(path, info.st_size, limit))
        return _read_bounded(descriptor, path, limit)
    except OSError as error:
        raise BadInput(f"{path}: cannot be read ({error.strerror or error})") from None
    finally:
        os.close(descriptor)


def _read_bounded(descriptor: int, path: Path, limit: int) -> bytes:
    chunks, total = [], 0
    while True:
        chunk = os.read(descriptor, min(_CHUNK, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise BadInput(_too_large(path, total, limit, growing=True))


def _too_large(path: Path, size: int, limit: int, growing: bool = False) -> str:
    what = "grew past" if growing else f"is {size / (1 << 20):.0f} MiB, over"
    return f"{path}: {what} the input size limit of {limit / (1 << 20):g} MiB (set {FILE_ENV_VAR} to raise it)"
