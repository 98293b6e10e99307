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
- Claims (`claim`, `release`): a hidden, locked file beside an output that a running
  process is making, so two runs over the same folders share the work instead of both
  doing it, and never remove each other's temporary files.
"""

from __future__ import annotations

import errno
import fcntl
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


# --- records: which settings made an output ------------------------------------------------


def record_path(output: Path | str) -> Path:
    """The hidden sidecar beside `output` that says what made it."""
    output = Path(output)
    return output.parent / f".{output.name}{RECORD_SUFFIX}"


def is_output_record(name: str) -> bool:
    return name.startswith(".") and name.endswith(RECORD_SUFFIX)


def write_record(output: Path | str, data: bytes, settings: dict, *, source: Path | str | None = None) -> None:
    """Records that `output` (holding `data`, just written) was made with `settings`; atomic, like the output."""
    output = Path(output)
    info = os.stat(output)
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "output": output.name,
        "input": None if source is None else str(source),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "mtime_ns": info.st_mtime_ns,
        "settings": settings,
    }
    write_atomic(record_path(output), (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())


def _read_record(output: Path) -> dict | None:
    from .safe_read import read_regular_file

    try:
        record = json.loads(read_regular_file(record_path(output), limit=1 << 16))
    except (BadInput, ValueError, OSError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or not isinstance(record.get("settings"), dict):
        return None
    return record


def is_recorded_output(path: Path | str) -> bool:
    """Whether `path` is an output a run made (its record is there and matches its size); cheap: one stat."""
    path = Path(path)
    record = _read_record(path)
    try:
        return record is not None and record.get("bytes") == os.stat(path).st_size
    except OSError:
        return False


def recorded_settings(output: Path | str) -> dict | None:
    """The settings that made `output`, when its record is there and still describes it; else None.

    The output must have the recorded size, and the recorded modification time or else
    the recorded SHA-256: an output replaced or edited since is not taken as made by them.
    """
    output = Path(output)
    record = _read_record(output)
    if record is None:
        return None
    try:
        info = os.stat(output)
    except OSError:
        return None
    if record.get("bytes") != info.st_size:
        return None
    if record.get("mtime_ns") != info.st_mtime_ns:
        from .safe_read import read_regular_file

        try:
            if hashlib.sha256(read_regular_file(output)).hexdigest() != record.get("sha256"):
                return None
        except BadInput:
            return None
    return record["settings"]


def describe_change(old: dict | None, new: dict) -> str:
    """Why an existing output is made again: no record, or which settings differ."""
    if old is None:
        return "redone: no record of the settings that made the existing output"
    shown = lambda value: "default" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    changed = [f"{key} {shown(old.get(key))} -> {shown(value)}" for key, value in new.items() if old.get(key) != value]
    return "redone: the existing output was made with other settings (" + ", ".join(changed) + ")"


# --- claims: one process makes each output --------------------------------------------------

# A claim is an exclusive flock on a small hidden file beside the output, held by the run that
# makes it: the kernel drops the lock when that process dies, however it dies (kill -9, out of
# memory), so liveness needs no pid checks (pids and thread ids get reused). The JSON inside only
# names the holder in messages. On a file system without locks claims are not enforced.
_held: dict[str, int] = {}  # claim path -> the open descriptor whose lock is this process's claim


def claim_path(output: Path | str) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}{CLAIM_SUFFIX}"


def is_claim(name: str) -> bool:
    return name.startswith(".") and name.endswith(CLAIM_SUFFIX)


def _lock(descriptor: int) -> bool | None:
    """True when locked now, False when another process holds it, None when the file system has no locks."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _still_there(descriptor: int, path: Path) -> bool:
    """Whether `path` still names the file open as `descriptor` (its last holder may have removed it)."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except OSError:
        return False


def _holder_reason(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        holder = {}
    holder = holder if isinstance(holder, dict) else {}
    return f"being made by another run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}); not done twice"


def _open_existing(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None


def held_by_another(output: Path | str) -> str | None:
    """Why another live process holds `output`, or None when nobody else does."""
    path = claim_path(output)
    if str(path) in _held or (descriptor := _open_existing(path)) is None:
        return None
    try:
        return _holder_reason(path) if _lock(descriptor) is False else None
    finally:
        os.close(descriptor)


def claim(output: Path | str) -> str | None:
    """Claims `output` for this process: None when it is ours now, else why another live run holds it.

    A claim left by a process that has died (kill -9, a crash) is taken over."""
    path = claim_path(output)
    if str(path) in _held:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        locked = _lock(descriptor)
        if locked is False:
            os.close(descriptor)
            return _holder_reason(path)
        if locked and not _still_there(descriptor, path):
            os.close(descriptor)  # its holder dropped it as we opened it: claim afresh
            continue
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        _held[str(path)] = descriptor
        return None
    return "claimed by another run"


def release(output: Path | str) -> None:
    """Drops this process's claim on `output` (another process's is left alone)."""
    path = claim_path(output)
    descriptor = _held.pop(str(path), None)
    if descriptor is not None:
        path.unlink(missing_ok=True)  # removed while still locked, so nobody takes over a claim being dropped
        os.close(descriptor)


def remove_dead_claim(output: Path | str) -> bool:
    """Removes a claim on `output` left by a process that is gone; True if there was one."""
    path = claim_path(output)
    if str(path) in _held or (descriptor := _open_existing(path)) is None:
        return False
    try:
        if _lock(descriptor) is False or not _still_there(descriptor, path):
            return False
        path.unlink(missing_ok=True)
        return True
    finally:
        os.close(descriptor)
