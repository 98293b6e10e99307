import textwrap
from importlib.metadata import EntryPoint

import pytest

from enhance import registry
from enhance.codecs import BUILTIN_CODECS
from enhance.errors import CodecUnavailable

PLUGIN_SOURCE = '''
class ToyCodec:
    name = "toy"
    needs_container = True

    def __init__(self, *, gain=1):
        self.gain = gain

    def available(self):
        return True, ""


class ToyFullCodec:
    name = "toy-full"


NOT_CALLABLE = 3
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "enhance_toy_plugin.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("ENHANCE_PLUGINS", raising=False)
    return "enhance_toy_plugin"


def entry(name, value, group="enhance.codecs"):
    return EntryPoint(name=name, value=value, group=group)


def test_builtins_are_listed_first():
    with registry.use_plugins():
        listing = registry.plugins("codec")
    assert [p.name for p in listing] == list(BUILTIN_CODECS)
    assert all(p.source == "built-in" and p.factory is BUILTIN_CODECS[p.name] for p in listing)
    assert "jpeg" in BUILTIN_CODECS


def test_entry_points_load_through_the_registry(plugin_module):
    points = [
        entry("toy", f"{plugin_module}:ToyCodec"),
        entry("toy-full", f"{plugin_module}:ToyFullCodec", group="enhance.full_codecs"),
    ]
    with registry.use_plugins(entry_points=points):
        codec = registry.get_codec("toy", gain=3)
        assert (type(codec).__name__, codec.gain) == ("ToyCodec", 3)
        assert registry.container_codec("toy")[0] == "codec"
        kind, factory = registry.container_codec("toy-full")
        assert (kind, factory.__name__) == ("full_codec", "ToyFullCodec")
        assert "toy" not in registry.factories("full_codec")
    # Outside the block the injected plugins are gone.
    with registry.use_plugins(), pytest.raises(CodecUnavailable, match="no codec named 'toy'"):
        registry.get_codec("toy")


def test_broken_plugins_are_reported_not_raised(plugin_module):
    points = [
        entry("missing-module", "enhance_no_such_module_anywhere:Codec"),
        entry("missing-attribute", f"{plugin_module}:NoSuchClass"),
        entry("not-callable", f"{plugin_module}:NOT_CALLABLE"),
        entry("jpeg", f"{plugin_module}:ToyCodec"),
        entry("toy", f"{plugin_module}:ToyCodec"),
    ]
    with registry.use_plugins(entry_points=points):
        listing = {p.name: p for p in registry.plugins("codec") if p.source != "built-in"}
        assert "ModuleNotFoundError" in listing["missing-module"].error
        assert "AttributeError" in listing["missing-attribute"].error
        assert "not callable" in listing["not-callable"].error
        assert "already taken by built-in" in listing["jpeg"].error
        assert listing["toy"].error is None
        assert registry.factories("codec")["jpeg"] is BUILTIN_CODECS["jpeg"]
        with pytest.raises(CodecUnavailable, match="missing-module.*unusable.*ModuleNotFoundError"):
            registry.get_codec("missing-module")
        with pytest.raises(CodecUnavailable, match="x.enh needs codec 'missing-module'.*ModuleNotFoundError"):
            registry.container_codec("missing-module", source="x.enh")


@pytest.mark.parametrize(
    "setting, loaded",
    [
        (None, {"toy", "other"}),
        ("", set()),
        ("toy", {"toy"}),
        (" other , unrelated ", {"other"}),
    ],
)
def test_enhance_plugins_restricts_what_loads(plugin_module, monkeypatch, setting, loaded):
    if setting is not None:
        monkeypatch.setenv("ENHANCE_PLUGINS", setting)
    points = [entry("toy", f"{plugin_module}:ToyCodec"), entry("other", f"{plugin_module}:ToyCodec")]
    with registry.use_plugins(entry_points=points):
        assert {p.name for p in registry.plugins("codec") if p.source != "built-in"} == loaded
        # Built-ins are not plugins: the setting never hides them.
        assert "jpeg" in registry.factories("codec")


def test_injected_factories(plugin_module):
    class Sharpen:
        name = "sharpen"

    with registry.use_plugins(enhancers={"sharpen": Sharpen}, full_codecs={"gen": Sharpen}):
        assert type(registry.create("enhancer", "sharpen")) is Sharpen
        assert type(registry.create("full_codec", "gen")) is Sharpen
        assert registry.plugins("enhancer")[0].name == "dirac"
        assert [p.source for p in registry.plugins("enhancer")] == ["built-in", "injected"]


def test_unknown_container_codec_is_never_imported():
    with registry.use_plugins():
        with pytest.raises(CodecUnavailable, match="'os.path:join', which is not installed"):
            registry.container_codec("os.path:join")
    with pytest.raises(ValueError, match="kind"):
        registry.plugins("codecs")


def test_installed_plugins_are_discovered_once(monkeypatch):
    calls = []

    def fake_entry_points(kind):
        calls.append(kind)
        return [entry("toy", "enhance_no_such_module_anywhere:Codec")] if kind == "codec" else []

    monkeypatch.setattr(registry, "_installed_entry_points", fake_entry_points)
    monkeypatch.setattr(registry, "_discovered", {})
    monkeypatch.delenv("ENHANCE_PLUGINS", raising=False)
    for _ in range(3):
        assert registry.plugins("codec")[-1].name == "toy"
    assert calls == ["codec"]
