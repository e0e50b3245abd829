"""What assembly checks of a plugin before anything starts: an index's, a strategy's, a
write buffer's and an L1 tier's protocol members, and why a shipped plugin is missing."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, ClassVar

import pytest

import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, hookimpl
from cache_core.errors import ConfigError, PluginMissingError
from cache_core.globs import matcher
from cache_core.plugins import Registry, make_plugin_manager
from cache_core.strategies import StrategyContext, Write
from cache_core.tiers.base import CoherenceListener
from cache_core.tiers.memory import MemoryTier
from cache_plugins_invalidation.local_index import LocalIndex

NO_PLUGINS = {"CACHING_AGENT_PLUGINS": ""}
L1 = {"type": "memory", "max_size_mb": 4, "ttl": 300}


def _build(config: dict[str, Any], *plugins: object) -> CachingAgent | ConfigError:
    try:
        return CachingAgent.from_config(config, plugins=plugins, env=NO_PLUGINS)
    except ConfigError as exc:
        return exc


class SharedBytesTier:
    """Storage only, and shared with other instances (attach says so)."""

    PLUGIN_NAME: ClassVar[str] = "shared_bytes"

    def __init__(self, options: object, context: object) -> None:
        self.default_ttl: float | None = 3600.0
        self.stored: dict[str, bytes] = {}

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def get(self, key: str) -> bytes | None:
        return self.stored.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.stored.get(key) for key in keys]

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        self.stored[key] = data

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, data, _ in items:
            self.stored[key] = data

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if self.stored.pop(key, None) is not None]

    async def delete_matching(self, pattern: str) -> list[str]:
        check = matcher(pattern)
        return await self.delete([key for key in list(self.stored) if check(key)])

    async def count(self) -> int:
        return len(self.stored)

    def describe(self) -> dict[str, Any]:
        return {}

    def attach(self, listener: CoherenceListener) -> bool:
        return True  # other instances share it

    async def try_lock(self, name: str, lease: float) -> str | None:
        return "token"

    async def unlock(self, name: str, token: str) -> None: ...


class ThirdPartyIndex:
    """An index written to the protocol as it stood before issue 15 (no ``shared``)."""

    PLUGIN_NAME: ClassVar[str] = "third_party"

    def __init__(self, options: object, context: Any) -> None:
        self._inner = LocalIndex(None, context)

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def record(self, entries: Any, dependencies: Sequence[str]) -> set[str]:
        return await self._inner.record(entries, dependencies)

    def settle(self, entries: Any, dependencies: Sequence[str]) -> Awaitable[None] | None:
        self._inner.settle(entries, dependencies)  # in process: done at once
        return None

    async def forget(self, keys: Iterable[str]) -> None:
        await self._inner.forget(keys)

    async def keys_for_tags(self, tags: Iterable[str]) -> set[str]:
        return await self._inner.keys_for_tags(tags)

    async def dependents(self, keys: Iterable[str]) -> set[str]:
        return await self._inner.dependents(keys)

    async def add_dependency(self, key: str, dependency: str) -> None:
        await self._inner.add_dependency(key, dependency)

    async def subscribe(self, event: str, target: str) -> None:
        await self._inner.subscribe(event, target)

    async def subscriptions(self, event: str) -> list[str]:
        return await self._inner.subscriptions(event)

    async def events(self) -> list[str]:
        return await self._inner.events()


class TierAndIndex:
    @hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [SharedBytesTier]

    @hookimpl
    def cache_register_invalidators(self) -> list[type[Any]]:
        return [ThirdPartyIndex]


async def test_a_third_party_index_without_shared_is_refused_or_starts() -> None:
    """``shared`` became a required index member read at start (warn_if_unshared) and by
    ``serve --workers``; nothing checks it at assembly, so a third-party index that lacks
    it passes assembly and start() raises AttributeError (after L2 was started)."""
    config = {
        "cache_tiers": {"l1": L1, "l2": {"type": "shared_bytes"}},
        "compression": {"enable": False},
        "invalidation": {"backend": "third_party"},
    }
    agent = _build(config, TierAndIndex(), cache_plugins_invalidation.hooks)  # indexes tags
    if isinstance(agent, ConfigError):  # refused at assembly, naming what it lacks: fine too
        assert "shared" in str(agent)
        return
    async with agent:
        assert await agent.set("k", 1, tags=["t"]) == "write_through"


class HeldWrites:
    """A buffering strategy with every WriteBuffer member but ``held_keys`` (as a strategy
    written to the pre-split protocol, ``buffers = True``, has)."""

    PLUGIN_NAME: ClassVar[str] = "held"
    buffers: ClassVar[bool] = True

    def __init__(self, options: object, context: StrategyContext) -> None:
        self._ctx = context
        self.held: dict[str, tuple[bytes, float | None]] = {}
        self.on_flush = None

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    def describe(self) -> dict[str, object]:
        return {"pending": len(self.held)}

    async def admit(self, items: Sequence[Write]) -> None: ...

    async def write(self, items: Sequence[Write]) -> None:
        for key, data, ttl, _ in items:
            self._ctx.l1.set(key, data, ttl)
            self.held[key] = (data, ttl)

    def pending(self, key: str) -> tuple[bytes, float | None] | None:
        return self.held.get(key)

    def holds_writes(self) -> bool:
        return bool(self.held)

    async def discard(self, keys: Iterable[str]) -> list[str]:
        return [key for key in list(keys) if self.held.pop(key, None) is not None]

    async def discard_matching(self, pattern: str) -> list[str]:
        check = matcher(pattern)
        return await self.discard([key for key in self.held if check(key)])


class HeldPlugin:
    @hookimpl
    def cache_register_strategies(self) -> list[type[Any]]:
        return [HeldWrites]


async def test_a_strategy_that_is_almost_a_write_buffer_is_not_silently_unbuffered() -> None:
    """buffers_of() is an isinstance check of the WriteBuffer protocol: one member short
    (here held_keys) and the strategy is treated as unbuffered without a word, so a
    delete no longer drops its held write (a flush would resurrect the key) and reads no
    longer see it. Before the split (``buffers = True``) it was a buffer."""
    config = {"cache_tiers": {"l1": L1}, "compression": {"enable": False}}
    agent = _build(config, HeldPlugin())
    if isinstance(agent, ConfigError):  # refused at assembly, naming what it lacks: fine too
        assert "held_keys" in str(agent)
        return
    async with agent:
        await agent.set("k", 1, strategy="held")
        strategy = agent.strategies["held"]
        assert isinstance(strategy, HeldWrites)
        await agent.delete("k")
        assert strategy.held == {}, "the held write survived the delete"


def test_a_shipped_plugin_that_failed_to_import_says_why() -> None:
    """A shipped plugin installed but failing to import (its client library missing) is
    reported as 'not installed; install caching-agent[redis]': the import error, kept in
    Registry.import_failures, is only added for names outside PLUGIN_EXTRAS."""
    registry = Registry.from_plugin_manager(make_plugin_manager(load_entry_points=False))
    registry.import_failures["redis"] = "cache_plugins_redis.hooks: No module named 'redis'"
    with pytest.raises(PluginMissingError) as info:
        registry.get("tier", "redis", path="cache_tiers.l2.type")
    assert "No module named 'redis'" in str(info.value)


class NoLenTier(MemoryTier):
    """An L1 tier without ``__len__`` and ``__contains__`` (LocalTier declares both)."""

    PLUGIN_NAME: ClassVar[str] = "no_len"
    __len__ = None  # type: ignore[assignment]
    __contains__ = None  # type: ignore[assignment]


class NoLenPlugin:
    @hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [NoLenTier]


def test_an_l1_tier_without_len_or_contains_is_refused_at_assembly() -> None:
    """missing_methods() skips every name starting with '_', so LocalTier's __len__ and
    __contains__ go unchecked: the tier assembles and fails later (get_stats, a pattern
    notice, warm-up) with a TypeError instead of a ConfigError naming them."""
    config = {"cache_tiers": {"l1": {"type": "no_len"}}, "compression": {"enable": False}}
    with pytest.raises(ConfigError, match="__len__"):
        CachingAgent.from_config(config, plugins=[NoLenPlugin()], env=NO_PLUGINS)


class ImmediateBuffer(HeldWrites):
    """A complete write buffer of a third party's, written before ``on_landed``: it sends
    each write to L2 at once and never says when a flush landed (nor has the attribute)."""

    PLUGIN_NAME: ClassVar[str] = "immediate"

    async def write(self, items: Sequence[Write]) -> None:
        assert self._ctx.l2 is not None
        await self._ctx.l2.set_many(items)
        for key, data, ttl, _ in items:
            self._ctx.l1.set(key, data, ttl)

    def held_keys(self) -> int:
        return 0


class ImmediatePlugin:
    @hookimpl
    def cache_register_strategies(self) -> list[type[Any]]:
        return [ImmediateBuffer]


async def test_a_write_buffer_that_never_reports_its_flush_is_indexed_in_the_request(
    sqlite_tier: Any, tmp_path: Any
) -> None:
    """``on_landed`` is optional: a buffer without it is still a buffer (adding it to the
    WriteBuffer protocol made such a strategy silently unbuffered), and its writes are
    indexed in the request, so the old value's tags stop reaching the key (deferred to a
    flush that never reports, they would reach it forever)."""
    config = {
        "cache_tiers": {"l1": L1, "l2": {"type": "sqlite"}},
        "sqlite": {"path": str(tmp_path / "l2.db")},
        "compression": {"enable": False},
    }
    agent = _build(config, sqlite_tier, ImmediatePlugin(), cache_plugins_invalidation.hooks)
    assert not isinstance(agent, ConfigError)
    async with agent:
        assert sorted(type(b).__name__ for b in agent.buffers) == ["ImmediateBuffer", "WriteBack"]
        await agent.set("k", "tagged", tags=["t"])
        await agent.set("k", "plain", strategy="immediate")
        assert await agent.invalidate_by_tags(["t"]) == 0
        assert await agent.get("k") == "plain"
