"""Write strategies against an in-test L2: write-back buffering and flushing, deletes that
a flush never undoes, write-through and write-around ordering, promotion TTLs."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import pytest
from attrs import define

import cache_core
import cache_plugins_invalidation.hooks
from cache_core import CachingAgent, ConfigError, TierUnavailableError
from cache_core.frames import decode_frame
from cache_core.globs import compile_glob
from cache_core.strategies import WriteBack


class DictTier:
    """A dict-backed RemoteTier on the agent's clock, storage only (it keeps the frames
    core writes). ``gate`` (when set) holds every ``set_many`` until it is opened;
    ``fail_writes`` makes ``set_many`` raise."""

    PLUGIN_NAME: ClassVar[str] = "dict"

    @define(frozen=True)
    class Options:
        ttl: float | None = 3600.0

    def __init__(self, options: DictTier.Options, context: Any) -> None:
        self.default_ttl = options.ttl
        self._clock = context.clock
        self.data: dict[str, tuple[bytes, float]] = {}
        self.set_many_calls: list[list[str]] = []
        self.fail_writes = False
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.listener: Any = None
        self._locks: dict[str, str] = {}

    # lifecycle and coherence: a private tier, so notices "flow" from the start
    def attach(self, listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        if self.listener is not None:
            self.listener.restored()

    async def close(self) -> None:
        return None

    # reads
    def _live(self, key: str) -> tuple[bytes, float] | None:
        entry = self.data.get(key)
        if entry is not None and entry[1] <= self._clock():
            del self.data[key]
            return None
        return entry

    async def get(self, key: str) -> bytes | None:
        entry = self._live(key)
        return None if entry is None else entry[0]

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    # writes
    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        self.data[key] = (data, math.inf if ttl is None else self._clock() + ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        self.set_many_calls.append([key for key, _, _ in items])
        if self.gate is not None:
            self.entered.set()
            await self.gate.wait()
        if self.fail_writes:
            raise ConnectionError("L2 is down")
        for key, data, ttl in items:
            await self.set(key, data, ttl)

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if self._live(key) is not None and self.data.pop(key)]

    async def delete_matching(self, pattern: str) -> list[str]:
        match = compile_glob(pattern).fullmatch
        return await self.delete([key for key in list(self.data) if match(key)])

    async def count(self) -> int:
        return sum(1 for key in list(self.data) if self._live(key) is not None)

    def describe(self) -> dict[str, Any]:
        return {"keys": len(self.data)}

    async def try_lock(self, name: str, lease: float) -> str | None:
        if name in self._locks:
            return None
        self._locks[name] = token = f"token:{name}"
        return token

    async def unlock(self, name: str, token: str) -> None:
        if self._locks.get(name) == token:
            del self._locks[name]

    # test helpers
    def value(self, key: str) -> Any:
        entry = self._live(key)
        return None if entry is None else orjson.loads(decode_frame(entry[0], {}, 2**32))

    def ttl(self, key: str) -> float | None:
        entry = self._live(key)
        assert entry is not None
        left = entry[1] - self._clock()
        return None if math.isinf(left) else left


class DictTierPlugin:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [DictTier]


def two_tier_config(
    batch_size: int = 100, flush_interval: float = 3600, l1_mb: float = 1, **sections: Any
) -> dict[str, Any]:
    return {
        "cache_tiers": {
            "l1": {"type": "memory", "max_size_mb": l1_mb, "ttl": 60},
            "l2": {"type": "dict"},
        },
        "strategies": {"write_back": {"batch_size": batch_size, "flush_interval": flush_interval}},
        "compression": {"enable": False},
        **sections,
    }


@pytest.fixture
async def make_two_tier(make_agent, clock):
    async def make(**kwargs: Any) -> tuple[CachingAgent, DictTier, WriteBack]:
        # Some writes carry tags: the invalidation plugin indexes them.
        plugins = (DictTierPlugin(), cache_plugins_invalidation.hooks)
        agent = await make_agent(two_tier_config(**kwargs), plugins=plugins)
        l2 = agent.l2
        assert isinstance(l2, DictTier)
        # Frames carry their expiry by the wall clock: here the fake one, so what an entry
        # has left follows the test's clock as the tier's own TTL does.
        assert agent.guarded_l2 is not None
        agent.guarded_l2.wall_clock = clock
        write_back = agent.strategies["write_back"]
        assert isinstance(write_back, WriteBack)
        return agent, l2, write_back

    return make


async def wait_until_entered(l2: DictTier) -> None:
    await asyncio.wait_for(l2.entered.wait(), timeout=1)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


# -- buffering and flushing ----------------------------------------------------------------


async def test_write_back_buffers_until_batch_size(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier(batch_size=3)
    assert await agent.set("k1", 1, strategy="write_back") == "write_back"
    await agent.set("k2", 2, strategy="write_back")
    assert l2.data == {}
    assert write_back.pending_count == 2
    assert (await agent.fetch_stats())["write_back_pending"] == 2
    assert await agent.get("k1") == 1  # served from L1 meanwhile
    await agent.set("k3", 3, strategy="write_back")
    assert l2.set_many_calls == [["k1", "k2", "k3"]]  # one batch
    assert {k: l2.value(k) for k in ("k1", "k2", "k3")} == {"k1": 1, "k2": 2, "k3": 3}
    assert write_back.pending_count == 0


async def test_a_rewrite_of_a_buffered_key_is_sent_once_with_the_last_value(
    make_two_tier,
) -> None:
    agent, l2, write_back = await make_two_tier(batch_size=3)
    await agent.set("k1", 1, strategy="write_back")
    await agent.set("k1", 10, strategy="write_back")
    await agent.set("k2", 2, strategy="write_back")
    assert l2.set_many_calls == []
    await write_back.flush()
    assert l2.set_many_calls == [["k1", "k2"]]
    assert l2.value("k1") == 10


async def test_write_back_flushes_on_close(make_two_tier) -> None:
    agent, l2, _ = await make_two_tier()
    await agent.set("k1", {"v": 1}, strategy="write_back")
    assert l2.data == {}
    await agent.close()
    assert l2.value("k1") == {"v": 1}


async def test_write_back_flushes_on_its_interval(make_two_tier) -> None:
    agent, l2, _ = await make_two_tier(flush_interval=0.01)
    await agent.set("k1", 1, strategy="write_back")
    for _ in range(200):
        if "k1" in l2.data:
            break
        await asyncio.sleep(0.005)
    assert l2.value("k1") == 1


async def test_flush_sends_the_remaining_ttl(make_two_tier, clock) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, ttl=100, strategy="write_back")
    await agent.set("gone", 1, ttl=5, strategy="write_back")
    clock.advance(30)
    await write_back.flush()
    assert l2.ttl("k1") == pytest.approx(70)
    assert "gone" not in l2.data  # expired while buffered: never sent


# -- reads see the buffer ------------------------------------------------------------------


async def test_reads_see_buffered_values_after_l1_dropped_them(make_two_tier) -> None:
    agent, l2, _ = await make_two_tier()
    await agent.set("k1", {"v": 1}, strategy="write_back")
    agent.l1.delete("k1")
    assert await agent.get("k1") == {"v": 1}
    assert agent.stats.hits_l2 == 1
    assert "k1" in agent.l1  # put back into L1
    assert l2.data == {}


async def test_reads_see_buffered_values_after_l1_evicted_them(make_two_tier) -> None:
    agent, l2, _ = await make_two_tier(l1_mb=0.001)  # about 1 KB: a handful of entries
    values = {f"key:{i}": {"i": i, "pad": "p" * 40} for i in range(12)}
    for key, value in values.items():
        await agent.set(key, value, strategy="write_back")
    assert agent.l1.evictions > 0
    assert l2.data == {}
    assert await agent.get_many(list(values)[:5]) == dict(list(values.items())[:5])
    for key, value in values.items():
        assert await agent.get(key) == value


# -- deletes are never undone by a flush ---------------------------------------------------


async def test_delete_drops_the_buffered_write(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, strategy="write_back")
    await agent.set("k2", 2, strategy="write_back")
    assert await agent.delete("k1") is True
    assert write_back.pending("k1") is None
    await write_back.flush()
    assert "k1" not in l2.data
    assert l2.value("k2") == 2
    assert await agent.get("k1") is None


async def test_delete_of_a_key_only_in_the_buffer_reports_it(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, strategy="write_back")
    agent.l1.delete("k1")
    assert await agent.delete("k1") is True
    await write_back.flush()
    assert l2.data == {}


async def test_invalidation_drops_buffered_writes(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("user:1", 1, strategy="write_back")
    await agent.set("user:2", 2, strategy="write_back", tags=["t"])
    await agent.set("other", 3, strategy="write_back")
    assert await agent.invalidate_pattern("user:1*") == 1
    assert await agent.invalidate_by_tags(["t"]) == 1
    await write_back.flush()
    assert list(l2.data) == ["other"]


async def test_a_failed_flush_keeps_its_writes_but_not_deleted_ones(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, strategy="write_back")
    await agent.set("k2", 2, strategy="write_back")
    l2.fail_writes = True
    with pytest.raises(TierUnavailableError):
        await write_back.flush()
    assert write_back.pending_count == 2
    assert write_back.flush_errors == 1
    await agent.delete("k1")
    l2.fail_writes = False
    assert await write_back.flush() == 1
    assert list(l2.data) == ["k2"]
    assert await agent.get("k1") is None


async def test_delete_during_a_failing_flush_is_not_undone_by_the_retry(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, strategy="write_back")
    await agent.set("k2", 2, strategy="write_back")
    l2.gate = asyncio.Event()
    flushing = asyncio.create_task(write_back.flush())
    await wait_until_entered(l2)
    deleting = asyncio.create_task(agent.delete("k1"))
    await settle()
    assert not deleting.done()  # waits for the flush in flight
    l2.fail_writes = True
    l2.gate.set()
    with pytest.raises(TierUnavailableError):
        await flushing
    assert await deleting is True
    assert write_back.pending("k1") is None
    assert write_back.pending("k2") is not None
    l2.fail_writes = False
    l2.gate = None
    await write_back.flush()
    assert "k1" not in l2.data
    assert l2.value("k2") == 2
    assert await agent.get("k1") is None


async def test_delete_during_a_succeeding_flush_lands_after_it(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k1", 1, strategy="write_back")
    await agent.set("k2", 2, strategy="write_back")
    l2.gate = asyncio.Event()
    flushing = asyncio.create_task(write_back.flush())
    await wait_until_entered(l2)
    deleting = asyncio.create_task(agent.delete("k1"))
    await settle()
    l2.gate.set()
    assert await flushing == 2
    assert await deleting is True
    assert "k1" not in l2.data
    assert l2.value("k2") == 2


# -- write-through / write-around after write-back -----------------------------------------


async def test_write_through_after_a_buffered_write_back_wins(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k", "old", strategy="write_back")
    await agent.set("k", "new", strategy="write_through")
    assert l2.value("k") == "new"
    assert write_back.pending("k") is None
    await write_back.flush()
    await agent.close()
    assert l2.value("k") == "new"
    assert agent.l1.get("k") == b'"new"'


async def test_write_through_during_an_inflight_flush_of_the_same_key_wins(
    make_two_tier,
) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k", "old", strategy="write_back")
    l2.gate = asyncio.Event()
    flushing = asyncio.create_task(write_back.flush())
    await wait_until_entered(l2)
    writing = asyncio.create_task(agent.set("k", "new", strategy="write_through"))
    await settle()
    l2.gate.set()
    await flushing
    await writing
    assert l2.value("k") == "new"


async def test_write_around_drops_the_l1_copy(make_two_tier) -> None:
    agent, l2, _ = await make_two_tier()
    await agent.set("k", "old")
    assert "k" in agent.l1
    assert await agent.set("k", "new", strategy="write_around") == "write_around"
    assert "k" not in agent.l1
    assert l2.value("k") == "new"
    assert await agent.get("k") == "new"  # from L2, then promoted
    assert agent.stats.hits_l2 == 1
    assert "k" in agent.l1


async def test_write_around_after_a_buffered_write_back_wins(make_two_tier) -> None:
    agent, l2, write_back = await make_two_tier()
    await agent.set("k", "old", strategy="write_back")
    await agent.set("k", "new", strategy="write_around")
    await write_back.flush()
    assert l2.value("k") == "new"
    assert await agent.get("k") == "new"


async def test_write_through_writes_both_tiers(make_two_tier, clock) -> None:
    agent, l2, _ = await make_two_tier()
    await agent.set("k", 1, ttl=3000)
    await agent.set("d", 1)
    assert l2.ttl("k") == pytest.approx(3000)
    assert agent.l1.ttl_remaining("k") == pytest.approx(60)  # capped by L1's ttl
    assert l2.ttl("d") == pytest.approx(3600)  # the L2 tier's default ttl
    clock.advance(60)
    assert "k" not in agent.l1
    assert await agent.get("k") == 1  # from L2 again


# -- promotion -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("l2_ttl", "elapsed", "l1_ttl"),
    [(100, 30, 60), (100, 80, 20), (None, 1000, 60), (60, 0, 60), (30, 29.5, 0.5)],
)
async def test_promotion_uses_the_remaining_ttl_capped_by_l1(
    make_two_tier, clock, l2_ttl: float | None, elapsed: float, l1_ttl: float
) -> None:
    agent, _, _ = await make_two_tier()
    assert agent.guarded_l2 is not None
    await agent.guarded_l2.set("k", b'"v"', l2_ttl)
    clock.advance(elapsed)
    assert await agent.get("k") == "v"
    assert agent.l1.ttl_remaining("k") == pytest.approx(l1_ttl)
    assert agent.stats.hits_l2 == 1


async def test_a_promoted_entry_does_not_outlive_l2(make_two_tier, clock) -> None:
    agent, _, _ = await make_two_tier()
    assert agent.guarded_l2 is not None
    await agent.guarded_l2.set("k", b"1", 100)
    clock.advance(80)
    assert await agent.get_many(["k"]) == {"k": 1}
    clock.advance(20)
    assert "k" not in agent.l1
    assert await agent.get("k") is None


# -- assembly ------------------------------------------------------------------------------


def test_l1_must_be_a_local_tier_and_l2_a_remote_one() -> None:
    remote_l1 = two_tier_config()
    remote_l1["cache_tiers"] = {"l1": {"type": "dict"}}
    with pytest.raises(ConfigError, match="'dict' is a remote tier; L1 needs a local one"):
        CachingAgent.from_config(
            remote_l1, plugins=[DictTierPlugin()], env={"CACHING_AGENT_PLUGINS": ""}
        )
    local_l2 = two_tier_config()
    local_l2["cache_tiers"]["l2"] = {"type": "memory"}
    with pytest.raises(ConfigError, match="'memory' is a local tier; L2 needs a remote one"):
        CachingAgent.from_config(
            local_l2, plugins=[DictTierPlugin()], env={"CACHING_AGENT_PLUGINS": ""}
        )


# -- bugs ----------------------------------------------------------------------------------


async def test_a_failed_size_triggered_flush_does_not_lose_the_writes_tags(
    make_two_tier,
) -> None:
    agent, l2, _ = await make_two_tier(batch_size=2)
    l2.fail_writes = True
    await agent.set("k1", 1, strategy="write_back")
    try:
        with contextlib.suppress(TierUnavailableError):
            await agent.set("k2", 2, strategy="write_back", tags=["t"])
        assert await agent.get("k2") == 2  # it is cached and served
        assert await agent.invalidate_by_tags(["t"]) == 1
    finally:
        l2.fail_writes = False  # let the flush at close succeed


class PrivateDictTier(DictTier):
    """A tier no other instance shares: it ignores attach, as RemoteTier allows."""

    PLUGIN_NAME: ClassVar[str] = "private_dict"

    def attach(self, listener: Any) -> None:
        return None


class PrivateTierPlugin:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [PrivateDictTier]


async def test_l1_serves_reads_when_l2_ignores_attach(make_agent) -> None:
    config = two_tier_config()
    config["cache_tiers"]["l2"] = {"type": "private_dict"}
    agent = await make_agent(config, plugins=(PrivateTierPlugin(),))
    await agent.set("k", 1)
    assert await agent.get("k") == 1
    assert agent.stats.hits_l1 == 1
