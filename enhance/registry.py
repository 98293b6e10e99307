"""Finds codecs, enhancers and full codecs: built-ins plus plugins registered through entry points.

A plugin distribution declares, in its pyproject.toml::

    [project.entry-points."enhance.codecs"]        # base codecs (enhance.codecs.base protocol)
    mycodec = "my_package:MyCodec"
    [project.entry-points."enhance.enhancers"]     # enhance.protocols.Enhancer
    [project.entry-points."enhance.full_codecs"]   # enhance.protocols.FullCodec

The entry-point name is the name users type and the name a container records. Each
entry point loads a factory (usually the class) called with keyword arguments only.

`ENHANCE_PLUGINS` restricts which plugins load: unset loads all, a comma list loads those
whose entry-point or distribution name is listed, an empty string loads none. Built-ins
always load. A plugin that fails to import is listed with its reason instead of
breaking everything else. Tests call `use_plugins(...)` to inject plugins instead of
loading installed ones.

Names that come from files or bitstreams are only looked up here; nothing is ever
imported from a dotted path found in data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from .errors import CodecUnavailable

KINDS = {
    "codec": "enhance.codecs",
    "enhancer": "enhance.enhancers",
    "full_codec": "enhance.full_codecs",
    # latent-model training tasks: factory(LatentTrainingRequest) -> enhance.train.trainer.TrainingTask
    "trainer": "enhance.trainers",
}
# A plugin's own weights.lock: the entry point loads its package (the lock is the package's
# `weights.lock`), a path, or a callable returning the path. A plugin class's
# `weights_lock` attribute (a path) does the same.
# Without either, a `weights.lock` at the top of the plugin's package is found too.
WEIGHTS_GROUP = "enhance.weights"


@dataclass(frozen=True)
class Plugin:
    """One registered name: its factory when it loaded, else the reason it did not."""

    kind: str
    name: str
    source: str  # "built-in", "injected", or the distribution that registered it
    factory: Callable | None
    error: str | None = None


def _builtins(kind: str) -> dict[str, Callable]:
    if kind == "codec":
        from .codecs import BUILTIN_CODECS

        return dict(BUILTIN_CODECS)
    if kind == "enhancer":
        from .enhancers import load_dirac

        return {"dirac": load_dirac}
    if kind == "trainer":
        from .train.prior import make_task

        return {"prior": make_task}
    return {}


def _plugin_filter() -> set[str] | None:
    setting = os.environ.get("ENHANCE_PLUGINS")
    if setting is None:
        return None
    return {_normalise(name) for name in setting.split(",") if name.strip()}


def _normalise(name: str) -> str:
    # Distribution names compare case-insensitively with '_' and '-' alike (PEP 503).
    return name.strip().lower().replace("_", "-")


def _load_entry_point(kind: str, entry_point: EntryPoint) -> Plugin:
    dist = getattr(entry_point, "dist", None)
    source = dist.name if dist is not None else entry_point.value
    try:
        loaded = entry_point.load()
    # A plugin's import runs arbitrary third-party code; whatever it raises is reported
    # in the listing so one broken plugin cannot take the whole tool down.
    except Exception as error:  # noqa: BLE001
        reason = f"failed to load {entry_point.value}: {type(error).__name__}: {error}"
        return Plugin(kind=kind, name=entry_point.name, source=source, factory=None, error=reason)
    if not callable(loaded):
        reason = f"{entry_point.value} is not callable"
        return Plugin(kind=kind, name=entry_point.name, source=source, factory=None, error=reason)
    return Plugin(kind=kind, name=entry_point.name, source=source, factory=loaded)


@dataclass(frozen=True)
class _Injection:
    plugins: list[Plugin]
    entry_points: list[EntryPoint]
    weights_locks: dict[str, Path]


# Injected plugins (tests) replace installed entry points while a `use_plugins` block runs.
_injected: list[_Injection] = []
_discovered: dict[tuple[str, frozenset[str] | None], list[Plugin]] = {}


def _installed_entry_points(kind: str) -> list[EntryPoint]:
    return list(entry_points(group=KINDS[kind]))


def _plugins(kind: str) -> list[Plugin]:
    wanted = _plugin_filter()
    if _injected:
        injection = _injected[-1]
        ready = [plugin for plugin in injection.plugins if plugin.kind == kind]
        candidates = [ep for ep in injection.entry_points if ep.group == KINDS[kind]]
    else:
        key = (kind, frozenset(wanted) if wanted is not None else None)
        if key in _discovered:
            return _discovered[key]
        ready, candidates = [], _installed_entry_points(kind)
    loaded = list(ready)
    for entry_point in candidates:
        dist = getattr(entry_point, "dist", None)
        names = {_normalise(entry_point.name)} | ({_normalise(dist.name)} if dist is not None else set())
        if wanted is None or names & wanted:
            loaded.append(_load_entry_point(kind, entry_point))
    if not _injected:
        _discovered[key] = loaded
    return loaded


def plugins(kind: str) -> list[Plugin]:
    """Every name of `kind` ("codec", "enhancer", "full_codec"): built-ins first, broken plugins included."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    listing = [Plugin(kind=kind, name=name, source="built-in", factory=made) for name, made in _builtins(kind).items()]
    taken = {plugin.name: plugin.source for plugin in listing}
    for plugin in _plugins(kind):
        if plugin.factory is not None and plugin.name in taken:
            reason = f"name already taken by {taken[plugin.name]}"
            plugin = Plugin(kind=kind, name=plugin.name, source=plugin.source, factory=None, error=reason)
        elif plugin.factory is not None:
            taken[plugin.name] = plugin.source
        listing.append(plugin)
    return listing


def factories(kind: str) -> dict[str, Callable]:
    """Names of `kind` that loaded, mapped to their factories."""
    return {plugin.name: plugin.factory for plugin in plugins(kind) if plugin.factory is not None}


def factory(kind: str, name: str) -> Callable:
    """The factory registered as `name`, or CodecUnavailable naming what exists (and why `name` broke)."""
    listing = plugins(kind)
    for plugin in listing:
        if plugin.name == name and plugin.factory is not None:
            return plugin.factory
    label = kind.replace("_", " ")
    for plugin in listing:
        if plugin.name == name:
            raise CodecUnavailable(f"{label} {name!r} from {plugin.source} is unusable: {plugin.error}")
    known = ", ".join(p.name for p in listing if p.factory is not None) or "none"
    raise CodecUnavailable(f"unknown {label} {name!r}: no {label} named {name!r} is installed (available: {known})")


def create(kind: str, name: str, **options):
    """An instance of the `kind` registered as `name`, built with keyword `options`."""
    return factory(kind, name)(**options)


def get_codec(name: str, **options):
    """A base codec by name (built-in or plugin): the one way to build a codec."""
    return create("codec", name, **options)


def codec_kind(name: str) -> str:
    """"codec" or "full_codec" for a codec name typed by a user; a base codec wins a shared name."""
    if name not in factories("codec") and name in factories("full_codec"):
        return "full_codec"
    return "codec"


def _lock_path(loaded) -> Path | None:
    if callable(loaded) and not isinstance(loaded, type) and not hasattr(loaded, "__path__"):
        loaded = loaded()
    if isinstance(loaded, (str, os.PathLike)):
        return Path(loaded)
    location = getattr(loaded, "__file__", None)
    return Path(location).parent / "weights.lock" if location else None


def weights_locks() -> list[tuple[str, Path]]:
    """(plugin, path) of every plugin's own weights.lock: `enhance.weights` entry points and
    the `weights_lock` attribute of loaded plugin classes (never the core's own lock)."""
    found: dict[Path, str] = {}
    if _injected:
        found.update({path: name for name, path in _injected[-1].weights_locks.items()})
        candidates = [ep for ep in _injected[-1].entry_points if ep.group == WEIGHTS_GROUP]
    else:
        candidates = list(entry_points(group=WEIGHTS_GROUP))
    wanted = _plugin_filter()
    for entry_point in candidates:
        dist = getattr(entry_point, "dist", None)
        names = {_normalise(entry_point.name)} | ({_normalise(dist.name)} if dist is not None else set())
        if wanted is not None and not names & wanted:
            continue
        try:
            path = _lock_path(entry_point.load())
        # As with codecs: a broken plugin must not take the whole tool down; its lock is missing.
        except Exception:  # noqa: BLE001
            continue
        if path is not None:
            found.setdefault(path, entry_point.name)
    for kind in KINDS:
        for plugin in plugins(kind):
            if plugin.factory is None or plugin.source == "built-in":
                continue
            lock = getattr(plugin.factory, "weights_lock", None)
            if lock is None:
                lock = _package_lock(plugin.factory)
            if isinstance(lock, (str, os.PathLike)):
                found.setdefault(Path(lock), plugin.name)
    return [(name, path) for path, name in found.items()]


def _package_lock(factory) -> Path | None:
    """The `weights.lock` at the top of a plugin factory's package, when there is one."""
    package = sys.modules.get(getattr(factory, "__module__", "").partition(".")[0])
    location = getattr(package, "__file__", None)
    candidate = Path(location).parent / "weights.lock" if location else None
    return candidate if candidate is not None and candidate.is_file() else None


def container_codec(name: str, *, source: str = "the file") -> tuple[str, Callable]:
    """Maps a codec name read from container `source` to ("codec" | "full_codec", factory); never imports by name."""
    for kind in ("codec", "full_codec"):
        found = factories(kind)
        if name in found:
            return kind, found[name]
    broken = [plugin for kind in ("codec", "full_codec") for plugin in plugins(kind) if plugin.name == name]
    if broken:
        plugin = broken[0]
        raise CodecUnavailable(f"{source} needs codec {name!r} from {plugin.source}, which is unusable: {plugin.error}")
    raise CodecUnavailable(f"{source} needs codec {name!r}, which is not installed (no built-in codec or plugin has it)")


def native_codec(data: bytes) -> str | None:
    """The registered base codec whose own file format `data` is in, or None.

    Each codec recognises its own files (`Codec.recognises`), built-ins first, so a
    plugin's file format decodes as the built-ins' do.
    """
    head = bytes(data[:64])
    for name, factory in factories("codec").items():
        recognises = getattr(factory, "recognises", None)
        if recognises is not None and recognises(head):
            return name
    return None


@contextmanager
def use_plugins(
    *,
    codecs: Mapping[str, Callable] | None = None,
    enhancers: Mapping[str, Callable] | None = None,
    full_codecs: Mapping[str, Callable] | None = None,
    entry_points: Iterable[EntryPoint] = (),
    weights_locks: Mapping[str, Path | str] | None = None,
) -> Iterator[None]:
    """Within the block, only these plugins exist besides the built-ins.

    `codecs`/`enhancers`/`full_codecs` map names to factories; `entry_points` go through
    the same loading (and ENHANCE_PLUGINS filtering) as installed ones; `weights_locks`
    maps plugin names to their weights.lock files.
    """
    injected = [
        Plugin(kind=kind, name=name, source="injected", factory=made)
        for kind, given in (("codec", codecs), ("enhancer", enhancers), ("full_codec", full_codecs))
        for name, made in (given or {}).items()
    ]
    locks = {name: Path(path) for name, path in (weights_locks or {}).items()}
    _injected.append(_Injection(plugins=injected, entry_points=list(entry_points), weights_locks=locks))
    try:
        yield
    finally:
        _injected.pop()
