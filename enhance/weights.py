"""weights.lock: which weight files exist, where to find them, and proof they are the right ones.

The lock is TOML with one `[[file]]` table per file::

    [[file]]
    bundle = "dirac-jpeg"                # a set of files loaded together
    path = "model.safetensors"           # the file's path inside its bundle
    url = "repo://weights/dirac-jpeg/model.safetensors"   # or https://... (file:// for local upstreams)
    sha256 = "..."                       # full hex digest, or instead:
    # sha256_prefix = "b27c7638"         # a leading part of the digest (at least 8 hex digits)
    size = 1234                          # bytes; may be left out when unknown
    license = "MIT"
    required = true                      # the installed features need it; default false (optional)

`sha256_prefix` exists because some upstreams (CompressAI) publish only a hash prefix in
their file names. A prefix catches corrupt and truncated downloads but not a deliberately
crafted file (8 hex digits are 32 bits); `enhance weights verify` prints the full digest
so such a row can be upgraded to `sha256`.

`repo://` paths are relative to the directory holding the lock: the repo root for a
checkout (editable installs included), or `enhance/data/` for weights shipped inside the
package.

A file is looked for, in order, in the repo, the cache (`weights/<bundle>/<path>` under
`$ENHANCE_CACHE`, else `$XDG_CACHE_HOME/enhance`, else `~/.cache/enhance`), a mirror
(`$ENHANCE_MIRROR`: a directory, a file:// URL or an http(s) URL laid out as
`<mirror>/<bundle>/<path>`), then upstream. Local mirror files are used in place;
downloads go to the cache. The first copy found must match the lock: a mismatch is an
error, never a silent fall-through (`fetch` alone replaces a bad cached copy).
`ENHANCE_OFFLINE=1` forbids network downloads (local mirrors and file:// still work).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import WeightsError

PACKAGE_DIR = Path(__file__).resolve().parent
LOCK_NAME = "weights.lock"
CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
ROW_KEYS = {"bundle", "path", "url", "sha256", "sha256_prefix", "size", "license", "required"}
NETWORK_SCHEMES = {"http", "https"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class WeightFile:
    bundle: str
    path: str
    url: str
    sha256: str | None
    sha256_prefix: str | None
    size: int | None
    license: str
    lock_dir: Path
    # Needed by the installed features (the shipped models); other files are optional
    # (metric backbones, neural-codec checkpoints), downloaded when first used.
    required: bool = False

    @property
    def expected_hash(self) -> str:
        """The digest as written in the lock (full or prefix), for messages."""
        return self.sha256 or f"{self.sha256_prefix}..."

    def fetch_command(self) -> str:
        return f"enhance weights fetch {self.bundle}"


@dataclass(frozen=True)
class FileStatus:
    """Outcome of checking one lock row: `where` the copy was found, or None if missing.

    `ok` is False only for what is wrong: a copy that does not match, or a required file
    that is absent. An absent optional file is ok (and `missing`).
    """

    ok: bool
    where: str | None
    location: Path | None
    detail: str
    missing: bool = False
    required: bool = False

    @property
    def label(self) -> str:
        if not self.missing:
            return "ok" if self.ok else "FAIL"
        return "MISSING (required)" if self.required else "absent (optional)"


def source_roots() -> list[Path]:
    """Directories that may hold weights.lock: a checkout (editable install), then the package's data."""
    repo = PACKAGE_DIR.parent
    roots = [repo] if (repo / "pyproject.toml").is_file() else []
    return roots + [PACKAGE_DIR / "data"]


def default_lock_path() -> Path:
    for root in source_roots():
        if (root / LOCK_NAME).is_file():
            return root / LOCK_NAME
    looked = ", ".join(str(root / LOCK_NAME) for root in source_roots())
    raise WeightsError(f"no {LOCK_NAME} found (looked in {looked})")


def cache_dir() -> Path:
    """enhance's cache root; weights go in its `weights/<bundle>/<path>` (other caches use other folders)."""
    if os.environ.get("ENHANCE_CACHE"):
        return Path(os.environ["ENHANCE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "enhance"


def cached_path(row: WeightFile) -> Path:
    return cache_dir() / "weights" / row.bundle / row.path


def offline() -> bool:
    return os.environ.get("ENHANCE_OFFLINE", "").strip() not in ("", "0")


def _relative_path(text: str, lock: Path, what: str) -> str:
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or "\\" in text or any(part in ("..", ".") for part in parts):
        raise WeightsError(f"{lock}: {what} {text!r} must be a relative path without '..'")
    return text


def _parse_row(raw: dict, lock: Path, index: int) -> WeightFile:
    where = f"{lock}: [[file]] #{index + 1}"
    unknown = sorted(set(raw) - ROW_KEYS)
    if unknown:
        raise WeightsError(f"{where}: unknown keys {unknown}")
    for key in ("bundle", "path", "url", "license"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise WeightsError(f"{where}: {key} must be a non-empty string")
    if not _NAME.fullmatch(raw["bundle"]):
        raise WeightsError(f"{where}: bundle {raw['bundle']!r} must be letters, digits, '.', '_' or '-'")
    path = _relative_path(raw["path"], lock, "path")
    scheme = urllib.parse.urlsplit(raw["url"]).scheme
    if scheme not in {"repo", "file"} | NETWORK_SCHEMES:
        raise WeightsError(f"{where}: url {raw['url']!r} must start with repo://, https://, http:// or file://")
    if scheme == "repo":
        _relative_path(raw["url"][len("repo://") :], lock, "url")
    sha256, prefix = raw.get("sha256"), raw.get("sha256_prefix")
    if (sha256 is None) == (prefix is None):
        raise WeightsError(f"{where}: give exactly one of sha256 and sha256_prefix")
    if sha256 is not None and not (isinstance(sha256, str) and len(sha256) == 64 and _HEX.fullmatch(sha256)):
        raise WeightsError(f"{where}: sha256 must be 64 lower-case hex digits")
    if prefix is not None and not (isinstance(prefix, str) and 8 <= len(prefix) < 64 and _HEX.fullmatch(prefix)):
        raise WeightsError(f"{where}: sha256_prefix must be 8 to 63 lower-case hex digits")
    size = raw.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise WeightsError(f"{where}: size must be a non-negative integer")
    required = raw.get("required", False)
    if type(required) is not bool:
        raise WeightsError(f"{where}: required must be true or false")
    return WeightFile(
        bundle=raw["bundle"],
        path=path,
        url=raw["url"],
        sha256=sha256,
        sha256_prefix=prefix,
        size=size,
        license=raw["license"],
        lock_dir=lock.resolve().parent,
        required=required,
    )


def load_lock(path: Path | str | None = None) -> list[WeightFile]:
    """The rows of weights.lock (the package's own when `path` is None), checked strictly."""
    lock = Path(path) if path is not None else default_lock_path()
    try:
        document = tomllib.loads(lock.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"{lock}: no such weights lock") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise WeightsError(f"{lock}: unreadable weights lock ({error})") from None
    unknown = sorted(set(document) - {"file"})
    if unknown:
        raise WeightsError(f"{lock}: unknown top-level keys {unknown}")
    raw_rows = document.get("file", [])
    if not isinstance(raw_rows, list) or not all(isinstance(raw, dict) for raw in raw_rows):
        raise WeightsError(f"{lock}: 'file' must be an array of tables ([[file]])")
    rows = [_parse_row(raw, lock, index) for index, raw in enumerate(raw_rows)]
    seen = set()
    for row in rows:
        if (row.bundle, row.path) in seen:
            raise WeightsError(f"{lock}: {row.bundle}/{row.path} is listed twice")
        seen.add((row.bundle, row.path))
    return rows


def all_rows() -> list[WeightFile]:
    """The core's weights.lock rows, then every plugin's (see `enhance.registry.weights_locks`).

    A plugin row naming a bundle file the core or another plugin already lists is an error.
    """
    from . import registry

    rows = load_lock()
    owners = {(row.bundle, row.path): str(default_lock_path()) for row in rows}
    for plugin, lock in registry.weights_locks():
        for row in load_lock(lock):
            key = (row.bundle, row.path)
            if key in owners:
                raise WeightsError(f"{lock} (plugin {plugin}): {row.bundle}/{row.path} is already listed in {owners[key]}")
            owners[key] = str(lock)
            rows.append(row)
    return rows


def _rows(lock: Path | str | None, bundle: str | None) -> list[WeightFile]:
    if lock is not None:
        rows = load_lock(lock)
    else:
        # The core's own bundles resolve from its lock alone, so a broken plugin lock
        # cannot stop the shipped model from loading.
        rows = load_lock()
        if bundle is None or not any(row.bundle == bundle for row in rows):
            rows = all_rows()
    if bundle is None:
        return rows
    selected = [row for row in rows if row.bundle == bundle]
    if not selected:
        known = ", ".join(sorted({row.bundle for row in rows})) or "none"
        raise WeightsError(f"no bundle {bundle!r} in weights.lock (bundles: {known})")
    return selected


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _mismatch(row: WeightFile, actual_hash: str, actual_size: int) -> str | None:
    """Why a file with this digest and size does not match the row, or None when it does."""
    if row.size is not None and actual_size != row.size:
        return f"size {actual_size} bytes, expected {row.size}"
    if row.sha256 is not None and actual_hash != row.sha256:
        return f"sha256 {actual_hash}, expected {row.sha256}"
    if row.sha256_prefix is not None and not actual_hash.startswith(row.sha256_prefix):
        return f"sha256 {actual_hash}, expected one starting {row.sha256_prefix}"
    return None


# Files already hashed in this process, keyed by path, expected digest, size and mtime: large weights are
# then hashed once per process rather than on every load.
_verified: dict[tuple[Path, str], tuple[int, int]] = {}


def _check_file(row: WeightFile, path: Path, where: str) -> None:
    stat = path.stat()
    if _verified.get((path, row.expected_hash)) == (stat.st_size, stat.st_mtime_ns):
        return
    if row.size is not None and stat.st_size != row.size:
        problem = f"size {stat.st_size} bytes, expected {row.size}"
    else:
        problem = _mismatch(row, *_hash_file(path))
    if problem:
        if where == "repo":
            # A file shipped with enhance, whose digest the same release wrote into weights.lock.
            raise WeightsError(
                f"weights {row.bundle}/{row.path}: the shipped file {path} has been tampered with or damaged: it does "
                f"not match weights.lock ({problem}); restore it (`git checkout -- {row.url[len('repo://'):]}` in a "
                "checkout, or reinstall enhance)"
            )
        raise WeightsError(
            f"weights {row.bundle}/{row.path}: the {where} copy {path} does not match weights.lock ({problem}); "
            f"delete it and run `{row.fetch_command()}`"
        )
    _verified[(path, row.expected_hash)] = (stat.st_size, stat.st_mtime_ns)


def _mirror() -> tuple[Path | None, str | None]:
    """ENHANCE_MIRROR as a local directory, or as a URL base for downloads."""
    mirror = os.environ.get("ENHANCE_MIRROR", "").strip()
    if not mirror:
        return None, None
    parts = urllib.parse.urlsplit(mirror)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path)), None
    if parts.scheme in NETWORK_SCHEMES:
        return None, mirror.rstrip("/")
    return Path(mirror).expanduser(), None


def _local_candidates(row: WeightFile) -> list[tuple[str, Path]]:
    candidates = []
    if row.url.startswith("repo://"):
        candidates.append(("repo", row.lock_dir / row.url[len("repo://") :]))
    candidates.append(("cache", cached_path(row)))
    mirror_dir, _ = _mirror()
    if mirror_dir is not None:
        candidates.append(("mirror", mirror_dir / row.bundle / row.path))
    return candidates


def _remote_sources(row: WeightFile) -> list[tuple[str, str]]:
    sources = []
    _, mirror_url = _mirror()
    if mirror_url is not None:
        sources.append(("mirror", f"{mirror_url}/{urllib.parse.quote(row.bundle)}/{urllib.parse.quote(row.path)}"))
    if not row.url.startswith("repo://"):
        sources.append(("upstream", row.url))
    return sources


def locate(row: WeightFile) -> tuple[str, Path] | None:
    """Where the file would be read from without downloading (not verified), or None."""
    for where, candidate in _local_candidates(row):
        if candidate.is_file():
            return where, candidate
    return None


def _download(row: WeightFile, url: str) -> Path:
    """Streams `url` into the cache through a temporary file, checked before it is renamed into place."""
    target = cached_path(row)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(CHUNK):
                size += len(chunk)
                if row.size is not None and size > row.size:
                    raise WeightsError(
                        f"weights {row.bundle}/{row.path}: {url} sends more than the expected {row.size} bytes"
                    )
                digest.update(chunk)
                out.write(chunk)
        problem = _mismatch(row, digest.hexdigest(), size)
        if problem:
            raise WeightsError(
                f"weights {row.bundle}/{row.path}: download from {url} does not match weights.lock ({problem})"
            )
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    stat = target.stat()
    _verified[(target, row.expected_hash)] = (stat.st_size, stat.st_mtime_ns)
    return target


def _obtain(row: WeightFile, *, replace_bad_cache: bool) -> Path:
    bad_cache = None
    for where, candidate in _local_candidates(row):
        if not candidate.is_file():
            continue
        try:
            _check_file(row, candidate, where)
            return candidate
        except WeightsError:
            if not (replace_bad_cache and where == "cache"):
                raise
            bad_cache = candidate
    sources = _remote_sources(row)
    if offline():
        sources = [(where, url) for where, url in sources if urllib.parse.urlsplit(url).scheme not in NETWORK_SCHEMES]
        if not sources:
            raise WeightsError(
                f"weights {row.bundle}/{row.path} (sha256 {row.expected_hash}) are not on this machine and "
                f"ENHANCE_OFFLINE=1 forbids downloading them; {download_help(row)}"
            )
    if not sources:
        raise WeightsError(
            f"weights {row.bundle}/{row.path} (sha256 {row.expected_hash}) are missing from {row.url} and have no "
            f"download source; set ENHANCE_MIRROR to a directory (or file:// or https:// URL) holding {row.bundle}/{row.path}"
        )
    failures = []
    for where, url in sources:
        try:
            return _download(row, url)
        # DNS and connection failures (URLError), HTTP errors (HTTPError, a URLError), timeouts
        # and resets (OSError), broken transfers (http.client's errors) and bad URLs (ValueError).
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"{where} {url}: {getattr(error, 'reason', None) or error or type(error).__name__}")
    stale = f" (the cached copy {bad_cache} does not match)" if bad_cache else ""
    raise WeightsError(
        f"weights {row.bundle}/{row.path} (sha256 {row.expected_hash}): could not download{stale}: "
        + "; ".join(failures)
        + f"; {download_help(row)}"
    )


def download_help(row: WeightFile) -> str:
    """What to do about weights that cannot be had here: the same advice for every way a download fails."""
    return (
        f"run `{row.fetch_command()}` on a machine that can reach {urllib.parse.urlsplit(row.url).netloc or row.url}, "
        f"or set ENHANCE_MIRROR to a directory (or file:// or https:// URL) holding {row.bundle}/{row.path}"
    )


def resolve(bundle: str, path: str, *, lock: Path | str | None = None) -> Path:
    """The local path of a verified copy of `bundle`/`path`, downloading it if allowed."""
    for row in _rows(lock, bundle):
        if row.path == path:
            return _obtain(row, replace_bad_cache=False)
    raise WeightsError(f"weights.lock has no file {path!r} in bundle {bundle!r}")


def resolve_bundle(bundle: str, *, lock: Path | str | None = None) -> Path:
    """The folder holding every verified file of `bundle` (a multi-file bundle, e.g. a prior)."""
    rows = _rows(lock, bundle)
    paths = [_obtain(row, replace_bad_cache=False) for row in rows]
    roots = {path.parents[len(PurePosixPath(row.path).parts) - 1] for row, path in zip(rows, paths)}
    if len(roots) != 1:
        raise WeightsError(f"weights {bundle}: its files lie in different places ({', '.join(map(str, sorted(roots)))}); "
                           f"run `enhance weights fetch {bundle}` to gather them in the cache")
    return roots.pop()


def fetch(bundle: str | None = None, *, lock: Path | str | None = None) -> list[tuple[WeightFile, Path]]:
    """Makes every file of `bundle` (all bundles when None) available locally; a bad cached copy is replaced."""
    return [(row, _obtain(row, replace_bad_cache=True)) for row in _rows(lock, bundle)]


def verify(bundle: str | None = None, *, lock: Path | str | None = None) -> list[tuple[WeightFile, FileStatus]]:
    """Hashes the copy each row would load (never downloads) and reports whether it matches.

    A status is not ok when a copy is present and wrong, or a required file is absent;
    absent optional files are reported (`missing`) but ok.
    """
    results = []
    for row in _rows(lock, bundle):
        found = locate(row)
        if found is None:
            detail = (
                "missing: the installed features need it; reinstall enhance"
                if row.required
                else f"not downloaded (needed only by what uses it); `{row.fetch_command()}` gets it"
            )
            status = FileStatus(ok=not row.required, where=None, location=None, detail=detail, missing=True, required=row.required)
            results.append((row, status))
            continue
        where, location = found
        actual_hash, actual_size = _hash_file(location)
        problem = _mismatch(row, actual_hash, actual_size)
        detail = problem or f"sha256 {actual_hash}"
        if problem and where == "repo":
            detail += "; the shipped file has been tampered with or damaged"
        results.append((row, FileStatus(ok=problem is None, where=where, location=location, detail=detail, required=row.required)))
    return results


def load_safetensors(
    path: Path | str, expected_keys: Iterable[str] | None = None, *, device: str = "cpu", error: type[WeightsError] = WeightsError
) -> dict:
    """Tensors from a safetensors file; with `expected_keys`, any missing or extra key is an error (`error`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as failure:
        raise error(f"{path}: not a readable safetensors file ({failure})") from None
    if expected_keys is not None:
        expected = set(expected_keys)
        missing = sorted(expected - set(tensors))
        unexpected = sorted(set(tensors) - expected)
        if missing or unexpected:
            raise error(f"{path}: keys do not match (missing {missing[:5]}, unexpected {unexpected[:5]})")
    return tensors


def _listed(keys: list[str]) -> str:
    return f"{keys[:5]}{' ...' if len(keys) > 5 else ''}"


def load_exact(module, state, source: str, *, new_modules: tuple[str, ...] = (), error: type[WeightsError] = WeightsError) -> None:
    """Loads `state` into `module`, which must match it exactly: the one strict loader of the package.

    A missing, extra or misshapen tensor raises `error` naming `source`, never a silently
    half-initialised network. Tensors are cast to the module's dtypes. `new_modules`
    names module prefixes `state` may lack (a trained model grown by a stage that
    starts as the identity); they keep their initialisation. BatchNorm's
    `num_batches_tracked` counter may be absent: files saved before PyTorch 0.4.1 lack
    it, PyTorch itself accepts that, and the counter does nothing in eval mode.
    """
    expected = module.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, value)
    missing = sorted(key for key in set(expected) - set(state) if not key.startswith(new_modules))
    unexpected = sorted(set(state) - set(expected))
    misshapen = sorted(key for key in set(expected) & set(state) if expected[key].shape != state[key].shape)
    if missing or unexpected or misshapen:
        details = [f"{what} {_listed(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if keys]
        raise error(f"{source}: weights do not match {type(module).__name__}: {'; '.join(details)}")
    for key, tensor in state.items():
        # A changed byte in a float can make it NaN or infinite, which turns every output black.
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise error(f"{source}: {key} holds non-finite values (NaN or infinity): the file is damaged or tampered with")
    module.load_state_dict({key: value.to(expected[key].dtype) for key, value in state.items()}, strict=not new_modules)


def load_file_exact(module, path: Path | str) -> None:
    """Loads a safetensors file into `module` through `load_exact` (no key, shape or value may be off)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises several types on damaged files
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    load_exact(module, tensors, str(path))
