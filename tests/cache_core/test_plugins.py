"""The plugin manager and registry: a plugin in two lines, conflicts, missing and unknown
plugins, the CACHING_AGENT_PLUGINS allow-list, typos in a plugin's Options."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attrs import define, field

import cache_core
from cache_core import (
    CachingAgent,
    ConfigError,
    NotFound,
    PluginConflictError,
    PluginMissingError,
)
from cache_core.plugins import ALLOW_LIST_ENV, Registry, make_plugin_manager

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
NO_COMPRESSION = {"compression": {"enable": False}}


class DictLoader:
    """Loads values from a mapping in its Options; records every key it is asked for."""

    PLUGIN_NAME: ClassVar[str] = "dict_loader"

    @define(frozen=True)
    class Options:
        match: list[str] = field(factory=list)
        values: dict[str, Any] = field(factory=dict)

    def __init__(self, options: DictLoader.Options, context: object = None) -> None:
        self.match = list(options.match)
        self.values = dict(options.values)
        self.calls: list[str] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load(self, key: str, ids: Mapping[str, str] | None = None) -> Any:
        self.calls.append(key)
        if key not in self.values:
            raise NotFound(key)
        return self.values[key]


class LoaderPlugin:
    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        return [DictLoader]


def loader_config(**loader_options: Any) -> dict[str, Any]:
    return {
        **NO_COMPRESSION,
        "loaders": {"dict_loader": {"match": ["user:*"], **loader_options}},
    }


def the_loader(agent: CachingAgent) -> DictLoader:
    (loader,) = agent.loading.loaders
    assert isinstance(loader, DictLoader)
    return loader


# -- a plugin in two lines -----------------------------------------------------------------


async def test_a_loader_plugin_loads_a_missing_key_through_get() -> None:
    config = loader_config(values={"user:1": {"name": "Alice"}})
    agent = CachingAgent.from_config(config, plugins=[LoaderPlugin()], env=NO_PLUGINS)
    async with agent:
        assert agent.describe()["loaders"] == ["dict_loader"]
        assert await agent.get("user:1") == {"name": "Alice"}
        assert await agent.get("user:1") == {"name": "Alice"}  # now from L1
        assert the_loader(agent).calls == ["user:1"]
        assert agent.stats.hits_loader == 1
        assert agent.stats.hits_l1 == 1
        assert await agent.get("user:2") is None  # the loader has nothing: a miss
        assert await agent.get("other:1") is None  # no loader matches: not even asked
        assert the_loader(agent).calls == ["user:1", "user:2"]
        assert agent.stats.misses == 2


async def test_a_loader_plugin_warms_up_keys() -> None:
    config = loader_config(values={"user:1": 1, "user:2": 2, "user:3": 3})
    agent = CachingAgent.from_config(config, plugins=[LoaderPlugin()], env=NO_PLUGINS)
    async with agent:
        await agent.set("other:1", "cached")
        warmed = await agent.warm_up(["user:1", "user:2", "user:9", "other:1", "other:2"])
        assert warmed == 3  # user:1, user:2 loaded; other:1 was already cached
        assert sorted(the_loader(agent).calls) == ["user:1", "user:2", "user:9"]
        assert "user:1" in agent.l1
        assert "user:2" in agent.l1
        assert "user:3" not in agent.l1
        assert agent.stats.hits == 0  # warm-up lookups are not hits or misses
        assert agent.stats.misses == 0
        assert await agent.get("user:2") == 2
        assert agent.stats.hits_l1 == 1


def test_registry_collects_plugin_classes_by_family_and_name() -> None:
    pm = make_plugin_manager([LoaderPlugin()], load_entry_points=False)
    registry = Registry.from_plugin_manager(pm)
    assert "dict_loader" in registry.names("loader")
    assert registry.get("loader", "dict_loader", path="loaders.dict_loader") is DictLoader
    assert registry.names("strategy") == ["write_around", "write_back", "write_through"]
    assert "memory" in registry.names("tier")
    assert registry.names("codec") == []  # no entry points: no codec plugin


class StartStopPlugin:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @cache_core.hookimpl
    def cache_agent_started(self, agent: CachingAgent) -> None:
        self.events.append(("started", agent))

    @cache_core.hookimpl
    def cache_agent_stopping(self, agent: CachingAgent) -> None:
        self.events.append(("stopping", agent))


async def test_lifecycle_hooks_are_called_once_each() -> None:
    plugin = StartStopPlugin()
    agent = CachingAgent.from_config(NO_COMPRESSION, plugins=[plugin], env=NO_PLUGINS)
    assert plugin.events == []
    async with agent:
        await agent.start()  # a second start is a no-op
        assert plugin.events == [("started", agent)]
    await agent.close()  # a second close is a no-op
    assert plugin.events == [("started", agent), ("stopping", agent)]


class CountingStrategy:
    """A third-party write strategy: L1 only, counting what it writes."""

    PLUGIN_NAME: ClassVar[str] = "counting"

    def __init__(self, options: object, context: Any) -> None:
        self._ctx = context
        self.written: list[str] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def write(self, items: Any) -> None:
        for key, data, ttl, _compress in items:
            self._ctx.l1.set(key, data, ttl)
            self.written.append(key)

    def describe(self) -> dict[str, object]:
        return {}


class StrategyPlugin:
    @cache_core.hookimpl
    def cache_register_strategies(self) -> list[type[Any]]:
        return [CountingStrategy]


async def test_a_strategy_plugin_is_usable_by_name_and_as_default() -> None:
    config = {**NO_COMPRESSION, "strategies": {"default": "counting"}}
    agent = CachingAgent.from_config(config, plugins=[StrategyPlugin()], env=NO_PLUGINS)
    async with agent:
        assert await agent.set("a", 1) == "counting"
        assert await agent.set("b", 2, strategy="write_through") == "write_through"
        strategy = agent.strategies["counting"]
        assert isinstance(strategy, CountingStrategy)
        assert strategy.written == ["a"]
        assert await agent.get("a") == 1


# -- conflicts -----------------------------------------------------------------------------


class OtherDictLoader(DictLoader):
    """A different class under the same PLUGIN_NAME."""


class OtherLoaderPlugin:
    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        return [OtherDictLoader]


def test_duplicate_plugin_name_is_a_conflict() -> None:
    with pytest.raises(PluginConflictError) as info:
        CachingAgent.from_config(
            NO_COMPRESSION, plugins=[LoaderPlugin(), OtherLoaderPlugin()], env=NO_PLUGINS
        )
    assert "loader plugin name 'dict_loader' registered twice" in str(info.value)


class ShadowMemoryTier:
    PLUGIN_NAME: ClassVar[str] = "memory"


class ShadowTierPlugin:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [ShadowMemoryTier]


def test_a_plugin_cannot_take_a_built_in_name() -> None:
    pm = make_plugin_manager([ShadowTierPlugin()], load_entry_points=False)
    with pytest.raises(PluginConflictError, match="tier plugin name 'memory' registered twice"):
        Registry.from_plugin_manager(pm)


def test_the_same_class_from_two_plugins_is_not_a_conflict() -> None:
    pm = make_plugin_manager([LoaderPlugin(), LoaderPlugin()], load_entry_points=False)
    registry = Registry.from_plugin_manager(pm)
    assert registry.get("loader", "dict_loader", path="x") is DictLoader


class NamelessPlugin:
    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        return [object]


def test_a_plugin_class_without_plugin_name_is_refused() -> None:
    pm = make_plugin_manager([NamelessPlugin()], load_entry_points=False)
    with pytest.raises(PluginConflictError, match="has no PLUGIN_NAME"):
        Registry.from_plugin_manager(pm)


# -- missing and unknown plugins -----------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "extra"), [("zstd", "zstd"), ("lz4", "lz4")])
def test_a_known_but_missing_codec_names_its_extra(algorithm: str, extra: str) -> None:
    with pytest.raises(PluginMissingError) as info:
        CachingAgent.from_config({"compression": {"algorithm": algorithm}}, env=NO_PLUGINS)
    assert str(info.value) == (
        f"compression.algorithm: codec plugin {algorithm!r} is not installed; "
        f"install caching-agent[{extra}]"
    )
    assert isinstance(info.value, ConfigError)


def test_a_missing_redis_tier_names_its_extra() -> None:
    config = {**NO_COMPRESSION, "cache_tiers": {"l1": {}, "l2": {"type": "redis"}}}
    with pytest.raises(PluginMissingError, match=r"install caching-agent\[redis\]"):
        CachingAgent.from_config(config, env=NO_PLUGINS)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"strategies": {"default": "write_sideways"}},
            "strategies.default: unknown strategy plugin 'write_sideways' "
            "(installed: write_around, write_back, write_through)",
        ),
        (
            {"cache_policies": {"p": {"strategy": "write_sideways"}}},
            "cache_policies.p.strategy: unknown strategy plugin 'write_sideways' "
            "(installed: write_around, write_back, write_through)",
        ),
        (
            {"strategies": {"write_sideways": {}}},
            "strategies.write_sideways: unknown strategy plugin 'write_sideways' "
            "(installed: write_around, write_back, write_through)",
        ),
        (
            {"invalidation": {"backend": "nope"}},
            # cache-core alone has no index (none is needed without tags and dependencies).
            "invalidation.backend: unknown invalidator plugin 'nope' (installed: none installed)",
        ),
    ],
)
def test_an_unknown_plugin_name_lists_the_installed_ones(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config({**NO_COMPRESSION, **config}, env=NO_PLUGINS)
    assert str(info.value) == message
    assert not isinstance(info.value, PluginMissingError)


def test_an_unknown_tier_type_lists_the_installed_tiers() -> None:
    config = {**NO_COMPRESSION, "cache_tiers": {"l1": {"type": "nope"}}}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(config, env=NO_PLUGINS)
    message = str(info.value)
    assert message.startswith("cache_tiers.l1.type: unknown tier plugin 'nope' (installed: ")
    assert "memory" in message


def test_an_unknown_loader_lists_the_installed_loaders() -> None:
    config = {**NO_COMPRESSION, "loaders": {"nope": {}}}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(config, plugins=[LoaderPlugin()], env=NO_PLUGINS)
    message = str(info.value)
    assert message.startswith("loaders.nope: unknown loader plugin 'nope' (installed: ")
    assert "dict_loader" in message


# -- the allow-list ------------------------------------------------------------------------


def test_an_empty_allow_list_loads_no_entry_point_plugins() -> None:
    pm = make_plugin_manager(env={ALLOW_LIST_ENV: ""})
    registry = Registry.from_plugin_manager(pm)
    assert registry.plugin_names == ["cache_core.builtins"]
    assert registry.names("codec") == []
    # The default compresses with gzip only where its plugin is installed: core alone serves.
    agent = CachingAgent.from_config({}, env={ALLOW_LIST_ENV: ""})
    assert agent.describe()["compression"] == "off"
    # Named, it must be there.
    with pytest.raises(PluginMissingError) as info:
        CachingAgent.from_config({"compression": {"algorithm": "gzip"}}, env={ALLOW_LIST_ENV: ""})
    assert str(info.value) == (
        "compression.algorithm: codec plugin 'gzip' is not installed; "
        "install caching-agent[compression]"
    )


def test_an_allow_list_of_unknown_names_loads_nothing() -> None:
    pm = make_plugin_manager(env={ALLOW_LIST_ENV: "no-such-plugin, , other"})
    assert Registry.from_plugin_manager(pm).plugin_names == ["cache_core.builtins"]


ENTRY_POINT_PLUGIN = """
from cache_core import hookimpl


class Loader:
    PLUGIN_NAME = "{name}_loader"
    match = ["{name}:*"]

    def __init__(self, options, context):
        pass

    async def start(self):
        pass

    async def close(self):
        pass

    async def load(self, key, ids):
        return key


@hookimpl
def cache_register_loaders():
    return [Loader]
"""


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``installed(*names)``: a distribution on sys.path, for this test only, whose
    ``caching_agent`` entry points are ``names``, each registering a loader
    ``<name>_loader``; so the allow-list is tested against entry points the test made,
    not against whichever shipped packages happen to be installed."""

    def install(*names: str) -> None:
        tag = tmp_path.name.replace("-", "_")
        info = tmp_path / f"caching_agent_test_plugins_{tag}-0.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: caching-agent-test-plugins-{tag}\nVersion: 0.0\n"
        )
        lines = [f"[{cache_core.NAME}]"]
        for name in names:
            module = f"caching_agent_test_plugin_{name}_{tag}"
            (tmp_path / f"{module}.py").write_text(ENTRY_POINT_PLUGIN.format(name=name))
            lines.append(f"{name} = {module}")
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(tmp_path))

    return install


def test_the_allow_list_admits_the_named_entry_points(installed: Callable[..., None]) -> None:
    installed("admitted", "left_out")
    pm = make_plugin_manager(env={ALLOW_LIST_ENV: " admitted ,"})
    registry = Registry.from_plugin_manager(pm)
    assert registry.plugin_names == ["admitted", "cache_core.builtins"]
    assert "admitted_loader" in registry.names("loader")
    assert "left_out_loader" not in registry.names("loader")
    config = {**NO_COMPRESSION, "loaders": {"admitted_loader": {}}}
    agent = CachingAgent.from_config(config, env={ALLOW_LIST_ENV: "admitted"})
    assert agent.describe()["loaders"] == ["admitted_loader"]
    config = {**NO_COMPRESSION, "loaders": {"left_out_loader": {}}}
    with pytest.raises(ConfigError, match="unknown loader plugin 'left_out_loader'"):
        CachingAgent.from_config(config, env={ALLOW_LIST_ENV: "admitted"})


def test_without_an_allow_list_every_entry_point_loads(installed: Callable[..., None]) -> None:
    installed("admitted", "left_out")
    registry = Registry.from_plugin_manager(make_plugin_manager(env={}))
    assert {"admitted", "left_out"} <= set(registry.plugin_names)
    assert {"admitted_loader", "left_out_loader"} <= set(registry.names("loader"))


def test_test_plugins_load_whatever_the_allow_list_says() -> None:
    agent = CachingAgent.from_config(
        loader_config(), plugins=[LoaderPlugin()], env={ALLOW_LIST_ENV: ""}
    )
    assert [loader.PLUGIN_NAME for loader in agent.loading.loaders] == ["dict_loader"]


# -- a plugin's Options --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"strategies": {"write_back": {"batch_sise": 10}}},
            "strategies.write_back: unknown field batch_sise",
        ),
        (
            {"strategies": {"write_back": {"batch_size": "ten"}}},
            "strategies.write_back.batch_size: expected an integer, got 'ten'",
        ),
        (
            {"strategies": {"write_back": {"batch_size": 0}}},
            "strategies.write_back: batch_size and flush_interval must be greater than 0",
        ),
        (
            {"strategies": {"write_around": {"sync": True}}},
            "strategies.write_around: 'write_around' takes no options",
        ),
        (
            {"loaders": {"dict_loader": {"mach": ["user:*"]}}},
            "loaders.dict_loader: unknown field mach",
        ),
        (
            {"loaders": {"dict_loader": {"match": "user:*"}}},
            "loaders.dict_loader.match: expected a list, got 'user:*'",
        ),
    ],
)
def test_a_typo_in_a_plugins_options_names_its_path(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(
            {**NO_COMPRESSION, **config}, plugins=[LoaderPlugin()], env=NO_PLUGINS
        )
    assert str(info.value) == message


def test_a_plugins_options_are_structured_from_its_section() -> None:
    config = {**NO_COMPRESSION, "strategies": {"write_back": {"batch_size": 7}}}
    agent = CachingAgent.from_config(config, env=NO_PLUGINS)
    assert agent.strategies["write_back"]._opts.batch_size == 7  # type: ignore[attr-defined]


def test_write_through_takes_sync_true_and_refuses_sync_false() -> None:
    shipped = {**NO_COMPRESSION, "strategies": {"write_through": {"sync": True}}}
    CachingAgent.from_config(shipped, env=NO_PLUGINS)  # the product description's config
    config = {**NO_COMPRESSION, "strategies": {"write_through": {"sync": False}}}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(config, env=NO_PLUGINS)
    assert str(info.value) == (
        "strategies.write_through: sync must be true (write_through writes L2 before the "
        "write returns; strategy write_back is the one whose writes reach L2 later)"
    )


def test_a_plugin_that_fails_to_import_blocks_only_a_config_that_uses_it(
    installed: Callable[..., None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    installed("broken", "fine")
    (module,) = tmp_path.glob("caching_agent_test_plugin_broken_*.py")
    module.write_text("raise ImportError(\"No module named 'missing_lib'\")\n")
    env = {ALLOW_LIST_ENV: "broken,fine"}
    with caplog.at_level("WARNING", logger="cache_core.plugins"):
        agent = CachingAgent.from_config(
            {**NO_COMPRESSION, "loaders": {"fine_loader": {}}}, env=env
        )
    assert agent.describe()["loaders"] == ["fine_loader"]
    (warning,) = [r for r in caplog.records if r.getMessage() == "plugin_import_failed"]
    assert warning.plugin == "broken" and "missing_lib" in warning.error  # type: ignore[attr-defined]
    config = {**NO_COMPRESSION, "loaders": {"broken_loader": {}}}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(config, env=env)
    message = str(info.value)
    assert "unknown loader plugin 'broken_loader'" in message
    assert "'broken'" in message and "missing_lib" in message  # why it may be missing


def test_an_l2_tier_missing_a_method_is_refused_at_assembly_naming_it() -> None:
    class HalfTier:
        PLUGIN_NAME = "half"

        def __init__(self, options: object, context: object) -> None:
            self.default_ttl = None

        async def get_many(self, keys: Any) -> Any: ...

    class HalfPlugin:
        @cache_core.hookimpl
        def cache_register_tiers(self) -> list[type[Any]]:
            return [HalfTier]

    config = {**NO_COMPRESSION, "cache_tiers": {"l1": {"type": "memory"}, "l2": {"type": "half"}}}
    with pytest.raises(ConfigError) as info:
        CachingAgent.from_config(config, plugins=[HalfPlugin()], env={ALLOW_LIST_ENV: ""})
    message = str(info.value)
    assert message.startswith("cache_tiers.l2.type: 'half' (")
    assert "HalfTier) lacks " in message and "delete_matching" in message
    assert "of RemoteTier" in message


class _Hooks:
    """A plugin given as an object (as the server gives its own settings)."""


def test_plugins_given_as_objects_are_named_by_their_class_or_module() -> None:
    import types

    module = types.ModuleType("my_company.cache_hooks")
    first, second = _Hooks(), _Hooks()
    pm = make_plugin_manager([first, second, module], load_entry_points=False)
    names = Registry.from_plugin_manager(pm).plugin_names
    own = f"{__name__}._Hooks"
    assert {own, f"{own}#2", "my_company.cache_hooks"} <= set(names), names
    assert not any(name.isdigit() for name in names), names  # pluggy's id() fallback
