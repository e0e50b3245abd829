"""The Redis L2 tier against a real engine: frames, TTL, strategies, promotion, batches."""

from __future__ import annotations

import asyncio
import os
import pickle
import time
from typing import Any, ClassVar

import pytest

import cache_core
from cache_core import CachingAgent, CorruptEntryError
from cache_core.frames import EXPIRY_AT, HEADER_SIZE, MAGIC, STAMP_AT, VERSION, header
from cache_core.tiers.memory import MemoryTier


def agent_for(config: dict[str, Any], **kwargs: Any) -> CachingAgent:
    return CachingAgent.from_config(config, env={}, **kwargs)


async def test_write_through_stores_a_frame_under_the_prefix_with_px(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with agent_for(l2_config) as agent:
        assert await agent.set("user:1:profile", {"name": "Ada"}, ttl=120) == "write_through"
        raw = engine.client.get(prefix + "user:1:profile")
        assert raw is not None
        assert raw[:3] == bytes((MAGIC, VERSION, 0))
        assert raw[HEADER_SIZE:] == b'{"name":"Ada"}'
        assert 118_000 < engine.client.pttl(prefix + "user:1:profile") <= 120_000
        # The frame carries the same expiry, so a read needs no PTTL.
        expires_at_ms = int.from_bytes(raw[EXPIRY_AT:STAMP_AT], "big")
        assert 118_000 < expires_at_ms - time.time() * 1000 <= 120_001  # ms rounding
        assert agent.l1.get("user:1:profile") == b'{"name":"Ada"}'


async def test_read_after_l1_eviction_comes_from_l2(l2_config: dict[str, Any]) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("k", [1, 2, 3])
        agent.l1.clear()
        assert await agent.lookup("k") == (b"[1,2,3]", "l2")
        assert await agent.lookup("k") == (b"[1,2,3]", "l1")  # promoted
        stats = await agent.fetch_stats()
        assert stats["hits_by_tier"] == {"l1": 1, "l2": 1, "loader": 0}
        assert stats["l2_size_keys"] == 1


@pytest.mark.parametrize("batch", [False, True], ids=["get", "get_many"])
async def test_promotion_uses_remaining_ttl_capped_by_l1_ttl(
    l2_config: dict[str, Any], engine: Any, prefix: str, batch: bool
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("short", 1, ttl=5)
        await agent.set("long", 2, ttl=3000)
        agent.l1.clear()
        if batch:
            assert await agent.get_many(["short", "long"]) == {"short": 1, "long": 2}
        else:
            await agent.get("short")
            await agent.get("long")
        left_short = agent.l1.ttl_remaining("short")  # type: ignore[attr-defined]
        left_long = agent.l1.ttl_remaining("long")  # type: ignore[attr-defined]
        assert left_short is not None and 3.5 < left_short <= 5.0  # PTTL, not the default
        assert left_long is not None and 55 < left_long <= 60.0  # capped by l1.ttl


async def test_write_around_writes_l2_only_and_drops_l1_copy(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("k", "old")
        assert "k" in agent.l1
        await agent.set("k", "new", strategy="write_around")
        assert "k" not in agent.l1
        assert engine.client.get(prefix + "k") is not None
        assert await agent.lookup("k") == (b'"new"', "l2")


async def test_write_back_buffers_until_flush_and_reads_see_the_buffer(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("wb", {"n": 1}, strategy="write_back")
        assert engine.client.get(prefix + "wb") is None  # not flushed yet
        agent.l1.clear()  # evicted from L1: the buffer still answers
        assert await agent.get("wb") == {"n": 1}
        await agent.set("gone", 1, strategy="write_back")
        assert await agent.delete("gone") is True
        assert (await agent.fetch_stats())["write_back_pending"] == 1
    # closing flushed the buffer; the deleted key was not resurrected
    assert engine.client.get(prefix + "wb") is not None
    assert engine.entries(prefix + "gone") == 0


async def test_write_back_flushes_at_batch_size_in_one_batch(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    l2_config["strategies"]["write_back"] = {"batch_size": 10, "flush_interval": 60}
    async with agent_for(l2_config) as agent:
        for i in range(9):
            await agent.set(f"b{i}", i, strategy="write_back")
        assert engine.client.get(prefix + "b0") is None
        await agent.set("b9", 9, strategy="write_back")
        assert [engine.client.exists(prefix + f"b{i}") for i in range(10)] == [1] * 10
        assert agent.strategies["write_back"].describe()["flushes"] == 1


async def test_write_back_flushes_on_interval(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    l2_config["strategies"]["write_back"] = {"batch_size": 1000, "flush_interval": 0.05}
    async with agent_for(l2_config) as agent:
        await agent.set("tick", 1, strategy="write_back")
        for _ in range(100):
            if engine.client.exists(prefix + "tick"):
                break
            await asyncio.sleep(0.02)
        assert engine.client.exists(prefix + "tick") == 1


async def test_write_through_after_buffered_write_back_wins(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("k", "buffered", strategy="write_back")
        await agent.set("k", "direct", strategy="write_through")
    async with agent_for(l2_config) as agent:
        assert await agent.get("k") == "direct"


async def test_batch_get_uses_l1_then_one_l2_round_trip(l2_config: dict[str, Any]) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set_many({f"k{i}": i for i in range(50)})
        agent.l1.clear()
        await agent.get("k0")
        found = await agent.lookup_many([f"k{i}" for i in range(50)] + ["missing"])
        assert found["k0"] == (b"0", "l1")
        assert all(found[f"k{i}"] == (str(i).encode(), "l2") for i in range(1, 50))
        assert found["missing"] is None


async def test_a_batch_asking_a_key_twice_reads_and_counts_it_once(
    l2_config: dict[str, Any],
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set_many({"a": 1, "b": 2})
        agent.l1.clear()
        assert await agent.get_many(["a", "b", "a", "gone", "gone"]) == {
            "a": 1,
            "b": 2,
            "gone": None,
        }
        assert (agent.stats.hits_l2, agent.stats.misses) == (2, 1)
        assert await agent.get_many(["b", "a", "b"]) == {"b": 2, "a": 1}  # from L1 now
        assert agent.stats.l1_batch_hits == 2


@pytest.mark.parametrize("notice", [False, True], ids=["quiet", "notice-meanwhile"])
async def test_a_batch_promotes_nothing_when_a_change_notice_arrived_during_its_read(
    l2_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, notice: bool
) -> None:
    """A notice that arrives while the MGET is out may concern any value it read (another
    instance's newer value landed, its notice already gone by): the batch answers what it
    read, and installs none of it in L1."""
    async with agent_for(l2_config) as agent:
        await agent.set_many({f"k{i}": i for i in range(5)})
        agent.l1.clear()
        assert agent.guarded_l2 is not None
        tier = agent.guarded_l2.inner
        read = tier.get_many

        async def read_then_notice(keys: Any) -> Any:
            found = await read(keys)
            if notice:
                agent.coherence.keys_changed(["elsewhere"])
            return found

        monkeypatch.setattr(tier, "get_many", read_then_notice)
        keys = [f"k{i}" for i in range(5)]
        assert await agent.get_many(keys) == {key: i for i, key in enumerate(keys)}
        assert [key in agent.l1 for key in keys] == [not notice] * 5
        assert agent.stats.hits_l2 == 5


class OneKeyAtATimeL1:
    """A third party's L1: the LocalTier protocol alone, no batch methods."""

    PLUGIN_NAME: ClassVar[str] = "one_key_l1"
    Options = MemoryTier.Options

    def __init__(self, options: MemoryTier.Options, context: Any) -> None:
        self._tier = MemoryTier(options, context)
        self.max_bytes, self.default_ttl = self._tier.max_bytes, self._tier.default_ttl
        self.calls: list[str] = []

    def get(self, key: str) -> bytes | None:
        self.calls.append("get")
        return self._tier.get(key)

    def set(self, key: str, data: bytes, ttl: float | None) -> bool:
        self.calls.append("set")
        return self._tier.set(key, data, ttl)

    def fits(self, key: str, data: bytes) -> bool:
        return self._tier.fits(key, data)

    def delete(self, key: str) -> bool:
        return self._tier.delete(key)

    def delete_matching(self, pattern: str) -> list[str]:
        return self._tier.delete_matching(pattern)

    def clear(self) -> int:
        return self._tier.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._tier

    def __len__(self) -> int:
        return len(self._tier)

    @property
    def size_bytes(self) -> int:
        return self._tier.size_bytes

    @property
    def evictions(self) -> int:
        return self._tier.evictions


class OneKeyAtATimePlugin:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [OneKeyAtATimeL1]


async def test_a_batch_reads_and_promotes_through_an_l1_without_batch_methods(
    l2_config: dict[str, Any],
) -> None:
    l2_config["cache_tiers"]["l1"]["type"] = "one_key_l1"
    async with agent_for(l2_config, plugins=[OneKeyAtATimePlugin()]) as agent:
        l1 = agent.l1
        assert isinstance(l1, OneKeyAtATimeL1)
        await agent.set_many({"a": 1, "b": 2}, strategy="write_around")
        l1.calls.clear()
        assert await agent.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": None}
        assert l1.calls == ["get"] * 3 + ["set"] * 2
        assert await agent.lookup_many(["b", "a"]) == {"b": (b"2", "l1"), "a": (b"1", "l1")}


async def test_pattern_invalidation_scans_under_the_prefix_only(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    engine.client.set("outside:user:1:profile", b"keep")
    async with agent_for(l2_config) as agent:
        for start in (0, 600):  # more than one SCAN/UNLINK batch
            await agent.set_many({f"user:{i}:profile": i for i in range(start, start + 600)})
        await agent.set("user:1:settings", 1)
        assert await agent.invalidate_pattern("user:*:profile") == 1200
        assert await agent.get("user:5:profile") is None
        assert await agent.get("user:1:settings") == 1
        assert (await agent.fetch_stats())["l2_size_keys"] == 1
    assert engine.client.get("outside:user:1:profile") == b"keep"
    engine.client.delete("outside:user:1:profile")


async def test_large_values_are_compressed_and_read_back(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    value = {"text": "lesson " * 1000}
    async with agent_for(l2_config) as agent:
        await agent.set("content:1", value)
        raw = engine.client.get(prefix + "content:1")
        assert raw is not None and raw[2] == 1  # gzip codec id
        assert len(raw) < 1000
        agent.l1.clear()
        assert await agent.get("content:1") == value


async def test_planted_pickle_is_refused_not_executed(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    engine.client.set(prefix + "evil", pickle.dumps({"x": 1}))
    async with agent_for(l2_config) as agent:
        with pytest.raises(CorruptEntryError):
            await agent.get("evil")


async def test_ttl_expires_in_l2(l2_config: dict[str, Any], engine: Any, prefix: str) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set("brief", 1, ttl=0.05, strategy="write_around")
        await asyncio.sleep(0.15)
        assert await agent.get("brief") is None


async def test_restart_keeps_l2_data_with_the_embedded_engine(tmp_path: Any) -> None:
    config = {
        "redis": {"url": "embedded", "data_dir": str(tmp_path / "engine")},
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
    }
    async with agent_for(config) as agent:
        await agent.set("survivor", {"kept": True})
        engine = agent.l2.engine  # type: ignore[union-attr]
        assert engine is not None
        pid = engine.pid
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the engine stopped with the agent
    async with agent_for(config) as agent:
        assert await agent.lookup("survivor") == (b'{"kept":true}', "l2")


async def test_repeated_write_back_writes_to_one_key_coalesce(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with agent_for(l2_config) as agent:
        for i in range(100):
            await agent.set("counter", i, strategy="write_back")
        write_back = agent.strategies["write_back"]
        assert write_back.describe()["pending"] == 1
        assert await write_back.flush() == 1  # type: ignore[attr-defined]
        assert write_back.describe()["flushed_items"] == 1
    assert engine.client.get(prefix + "counter")[HEADER_SIZE:] == b"99"


def command_calls(engine: Any, name: str) -> int:
    stats = engine.client.info("commandstats").get(f"cmdstat_{name}")
    return int(stats["calls"]) if stats else 0


async def test_concurrent_reads_in_one_tick_are_one_mget(l2_config: dict[str, Any], engine: Any):
    async with agent_for(l2_config) as agent:
        await agent.set_many({f"k{i}": i for i in range(50)}, strategy="write_around")
        before = {name: command_calls(engine, name) for name in ("mget", "get", "pttl")}
        values = await asyncio.gather(*(agent.get(f"k{i}") for i in range(50)), agent.get("none"))
        assert values == [*range(50), None]
        after = {name: command_calls(engine, name) for name in ("mget", "get", "pttl")}
        # The session engine is shared, but tests run one at a time.
        assert {name: after[name] - before[name] for name in after} == {
            "mget": 1,
            "get": 0,
            "pttl": 0,
        }


async def test_a_caller_that_gives_up_does_not_cancel_the_others_read(
    l2_config: dict[str, Any],
) -> None:
    async with agent_for(l2_config) as agent:
        await agent.set_many({"a": 1, "b": 2}, strategy="write_around")
        quitter = asyncio.create_task(agent.get("a"))
        stayer = asyncio.create_task(agent.get("b"))
        await asyncio.sleep(0)  # both queued in the same tick
        quitter.cancel()
        assert await stayer == 2
        assert quitter.cancelled()
        assert await agent.get("a") == 1


async def test_version_1_frames_read_with_the_engine_ttl(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    engine.client.set(prefix + "old", b"\xca\x01\x00" + b'{"v":1}', px=5000)
    engine.client.set(prefix + "older", b"\xca\x01\x00" + b"[2]")
    async with agent_for(l2_config) as agent:
        assert await agent.get_many(["old", "older", "gone"]) == {
            "old": {"v": 1},
            "older": [2],
            "gone": None,
        }
        left = agent.l1.ttl_remaining("old")  # type: ignore[attr-defined]
        assert left is not None and 4 < left <= 5  # the engine's PTTL, not L1's 60 s
        assert agent.l1.ttl_remaining("older") == pytest.approx(60, abs=1)  # type: ignore[attr-defined]


async def test_an_entry_past_its_frame_expiry_is_a_miss(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    past = round(time.time() * 1000) - 1000  # the writer's clock says it has expired
    frame = header(expires_at_ms=past) + b"1"
    engine.client.set(prefix + "stale", frame, px=60_000)
    async with agent_for(l2_config) as agent:
        assert await agent.get("stale") is None
        assert await agent.get_many(["stale"]) == {"stale": None}
        assert "stale" not in agent.l1


async def test_get_stats_counts_l2_in_the_background(l2_config: dict[str, Any]) -> None:
    async with agent_for({**l2_config, "monitoring": {"l2_count_interval": 1}}) as agent:
        assert agent.get_stats()["l2_size_keys"] == 0
        await agent.set_many({"a": 1, "b": 2})
        deadline = time.monotonic() + 5
        while agent.get_stats()["l2_size_keys"] != 2:
            assert time.monotonic() < deadline, "not counted again in time"
            await asyncio.sleep(0.02)
        assert agent.get_stats()["l2_size_keys_age_seconds"] < 5


async def test_without_background_counts_get_stats_keeps_the_last_count(
    l2_config: dict[str, Any],
) -> None:
    async with agent_for({**l2_config, "monitoring": {"l2_count_interval": 0}}) as agent:
        await agent.set("a", 1)
        await asyncio.sleep(0.1)
        assert agent.get_stats()["l2_size_keys"] == 0  # as counted at start
        assert (await agent.fetch_stats())["l2_size_keys"] == 1
