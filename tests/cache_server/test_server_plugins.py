"""A loader plugin passed to ``create_app(cfg, plugins=[obj])`` computes values for /warm-up
and for read-through lookups."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import attrs
import pytest

import cache_core
from cache_core import ConfigError, NotFound
from cache_server import create_app

SOURCE: dict[str, Any] = {
    "user:1:profile": {"name": "Alice", "level": 5},
    "user:2:profile": {"name": "Bob", "level": 2},
    "user:3:profile": {"name": "Carol", "level": 9},
    "content:1": {"title": "Algebra"},
}


class SourcePlugin:
    """Registers ``source``: a loader reading :data:`SOURCE`, recording every load."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[str] = []
        self.built: list[Any] = []
        self.delay = delay

    @cache_core.hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        plugin = self

        class SourceLoader:
            PLUGIN_NAME: ClassVar[str] = "source"

            @attrs.define(frozen=True)
            class Options:
                match: list[str] = attrs.field(factory=list)
                suffix: str = ""

            def __init__(self, options: SourceLoader.Options, context: Any) -> None:
                self.options = options
                self.match = list(options.match)
                plugin.built.append(self)

            async def start(self) -> None:
                return None

            async def close(self) -> None:
                return None

            async def load(self, key: str, ids: Any) -> Any:
                plugin.calls.append(key)
                if plugin.delay:
                    await asyncio.sleep(plugin.delay)
                if key not in SOURCE:
                    raise NotFound(key)
                value = SOURCE[key]
                if self.options.suffix:
                    value = {**value, "suffix": self.options.suffix}
                return value

        return [SourceLoader]


@pytest.fixture
def plugin() -> SourcePlugin:
    return SourcePlugin()


@pytest.fixture
async def loading(make_client, config_factory, plugin):
    cfg = config_factory(loaders={"source": {"match": ["user:*"]}})
    return await make_client(cfg, plugins=(plugin,))


@pytest.mark.parametrize("compute_strategy", ["parallel", "sequential"])
async def test_warm_up_computes_values_then_get_serves_them_from_l1(
    loading, plugin, compute_strategy
):
    keys = ["user:1:profile", "user:2:profile", "user:404:profile"]
    resp = await loading.post("/warm-up", json={"keys": keys, "compute_strategy": compute_strategy})
    assert resp.status == 200
    body = await resp.json()
    assert body["success"] is False  # user:404:profile is not cached after it
    assert body["warmed_count"] == 2
    assert {k: f["code"] for k, f in body["failures"].items()} == {"user:404:profile": "not_found"}
    assert sorted(plugin.calls) == sorted(keys)

    for key in keys[:2]:
        resp = await loading.get(f"/cache/{key}")
        assert await resp.json() == {"key": key, "value": SOURCE[key], "hit": True, "tier": "l1"}
    assert (await (await loading.get("/cache/user:404:profile")).json())["hit"] is False
    # the GETs of warmed keys did not load again, and the miss is cached negatively
    assert sorted(plugin.calls) == sorted(keys)

    stats = await (await loading.get("/stats")).json()
    assert stats["sets"] == 2  # each loaded value was written once
    assert stats["hits"] == 2
    assert stats["misses"] == 1


async def test_warm_up_only_loads_keys_the_loader_matches(loading, plugin):
    resp = await loading.post("/warm-up", json={"keys": ["content:1", "user:3:profile"]})
    assert (await resp.json())["warmed_count"] == 1
    assert plugin.calls == ["user:3:profile"]
    assert (await (await loading.get("/cache/content:1")).json())["hit"] is False


async def test_warm_up_of_cached_keys_does_not_call_the_loader(loading, plugin):
    await loading.post("/cache", json={"key": "user:1:profile", "value": "mine"})
    resp = await loading.post("/warm-up", json={"keys": ["user:1:profile"]})
    assert (await resp.json())["warmed_count"] == 1
    assert plugin.calls == []
    assert (await (await loading.get("/cache/user:1:profile")).json())["value"] == "mine"


async def test_get_reads_through_the_loader_once(loading, plugin):
    resp = await loading.get("/cache/user:3:profile")
    assert await resp.json() == {
        "key": "user:3:profile",
        "value": SOURCE["user:3:profile"],
        "hit": True,
        "tier": "loader",
    }
    resp = await loading.get("/cache/user:3:profile")
    assert (await resp.json())["tier"] == "l1"
    assert plugin.calls == ["user:3:profile"]


async def test_batch_get_reads_through_the_loader(loading, plugin):
    resp = await loading.post(
        "/cache/batch-get", json={"keys": ["user:1:profile", "user:9:profile", "content:1"]}
    )
    assert await resp.json() == {
        "results": {
            "user:1:profile": SOURCE["user:1:profile"],
            "user:9:profile": None,
            "content:1": None,
        },
        "hits": 1,
        "misses": 2,
    }
    assert sorted(plugin.calls) == ["user:1:profile", "user:9:profile"]


async def test_concurrent_reads_of_a_missing_key_load_it_once(make_client, config_factory):
    plugin = SourcePlugin(delay=0.05)
    cfg = config_factory(loaders={"source": {}})  # no match: every key
    client = await make_client(cfg, plugins=(plugin,))
    bodies = await asyncio.gather(
        *(client.get("/cache/user:2:profile") for _ in range(5)),
        client.post("/warm-up", json={"keys": ["user:2:profile"]}),
    )
    assert plugin.calls == ["user:2:profile"]
    for resp in bodies[:5]:
        assert (await resp.json())["value"] == SOURCE["user:2:profile"]
    assert (await bodies[5].json())["warmed_count"] == 1


async def test_loader_options_come_from_its_config_section(make_client, config_factory):
    plugin = SourcePlugin()
    cfg = config_factory(loaders={"source": {"match": ["user:1:*"], "suffix": "cfg"}})
    client = await make_client(cfg, plugins=(plugin,))
    assert [loader.options.suffix for loader in plugin.built] == ["cfg"]
    await client.post("/warm-up", json={"keys": ["user:1:profile"]})
    body = await (await client.get("/cache/user:1:profile")).json()
    assert body["value"] == {**SOURCE["user:1:profile"], "suffix": "cfg"}
    assert body["tier"] == "l1"


async def test_a_registered_but_unconfigured_loader_is_not_used(make_client, plugin):
    client = await make_client(plugins=(plugin,))
    resp = await client.post("/warm-up", json={"keys": ["user:1:profile"]})
    assert (await resp.json())["warmed_count"] == 0
    assert plugin.calls == []
    assert plugin.built == []


def test_bad_loader_options_fail_at_create_app(config_factory):
    cfg = config_factory(loaders={"source": {"match": ["user:*"], "colour": "red"}})
    with pytest.raises(ConfigError, match=r"loaders\.source"):
        create_app(cfg, plugins=[SourcePlugin()], env={})


def test_unknown_loader_name_fails_at_create_app(config_factory):
    cfg = config_factory(loaders={"nosuch": {}})
    with pytest.raises(ConfigError, match=r"loaders\.nosuch"):
        create_app(cfg, plugins=[SourcePlugin()], env={})
