"""Sliding expiry (``cache_policies.<name>.sliding``) on the real engine: reads keep a key
alive in L1 and, batched in the background, in L2 for every instance; keys of other
policies expire as before; a deleted key stays deleted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from cache_core import CachingAgent, ConfigError
from cache_core import sliding as sliding_module

POLICIES = {
    "user_session": {"match": ["session:*"], "ttl": 1, "sliding": True},
    "fixed": {"match": ["fixed:*"], "ttl": 1},
}


def cfg(engine: Any | None, prefix: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "cache_tiers": {"l1": {"max_size_mb": 4}},
        "cache_policies": POLICIES,
        "compression": {"enable": False},
    }
    if engine is not None:
        config["redis"] = {"url": engine.url, "key_prefix": prefix}
        config["cache_tiers"]["l2"] = {"type": "redis"}
    return config


async def test_reads_keep_a_sliding_key_alive_in_l1_alone() -> None:
    async with CachingAgent.from_config(cfg(None, ""), env={}) as agent:
        await agent.set("session:1", {"user": 1})
        await agent.set("fixed:1", 1)
        for _ in range(4):  # 1.6 s in all, a read every 0.4 s: past the 1 s TTL
            await asyncio.sleep(0.4)
            assert await agent.get("session:1") == {"user": 1}
        assert await agent.get("fixed:1") is None  # not sliding: gone after its 1 s
        await asyncio.sleep(1.1)  # no read for longer than the TTL: it expires
        assert await agent.get("session:1") is None


async def test_reads_on_one_instance_keep_the_key_alive_in_l2_for_all(
    engine: Any, prefix: str
) -> None:
    config = cfg(engine, prefix)
    raw = aioredis.Redis.from_url(engine.url)
    try:
        async with (
            CachingAgent.from_config(config, env={}) as a,
            CachingAgent.from_config(config, env={}) as b,
        ):
            await a.set("session:x", "alive")
            await a.set("fixed:x", "gone")
            assert await a.get("fixed:x") == "gone"
            for _ in range(4):  # A reads from its L1; each read extends L2 too, batched
                await asyncio.sleep(0.4)
                assert await a.get("session:x") == "alive"
            await asyncio.sleep(sliding_module.TOUCH_EVERY * 3)
            left = await raw.pttl(f"{prefix}session:x")
            assert 700 < left <= 1000, left  # moved by A's last read, not its write
            assert await b.get("session:x") == "alive"  # B never read it: L2 kept it
            assert await b.get("fixed:x") is None
            assert a._toucher is not None and a._toucher.sent >= 1
    finally:
        await raw.aclose()


async def test_a_batch_read_and_the_http_answer_slide_too(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(cfg(engine, prefix), env={}) as agent:
        await agent.set_many({"session:a": 1, "session:b": 2})
        for _ in range(3):
            await asyncio.sleep(0.4)
            assert await agent.get_many(["session:a", "session:b"]) == {
                "session:a": 1,
                "session:b": 2,
            }
        found = agent.lookup_l1_tagged("session:a")
        assert found is not None and found[2] is not None and 0.9 < found[2] <= 1.0


async def test_a_deleted_key_is_not_brought_back_by_a_queued_extension(
    engine: Any, prefix: str
) -> None:
    raw = aioredis.Redis.from_url(engine.url)
    try:
        async with CachingAgent.from_config(cfg(engine, prefix), env={}) as agent:
            await agent.set("session:d", 1)
            await agent.delete("session:d")  # leaves a tombstone
            before = await raw.get(f"{prefix}session:d")
            assert agent.l2 is not None
            await agent.l2.touch_many(  # type: ignore[attr-defined]
                [("session:d", 600), ("session:absent", 600)]
            )
            assert await raw.get(f"{prefix}session:d") == before
            assert await raw.pttl(f"{prefix}session:d") <= 60_000  # the tombstone's own
            assert await raw.exists(f"{prefix}session:absent") == 0
            assert await agent.get("session:d") is None
    finally:
        await raw.aclose()


async def test_a_sliding_key_refuses_tags_and_dependencies() -> None:
    from cache_core import InvalidValueError

    async with CachingAgent.from_config(cfg(None, ""), env={}) as agent:
        with pytest.raises(InvalidValueError, match="cannot carry tags or dependencies"):
            await agent.set("session:t", 1, tags=["user:1"])
        with pytest.raises(InvalidValueError, match="cannot carry tags or dependencies"):
            await agent.set("session:t", 1, dependencies=["user:1"])
        with pytest.raises(InvalidValueError, match="cannot carry tags or dependencies"):
            await agent.set_many({"session:t": 1, "other": 2}, tags=["user:1"])
        assert await agent.get("session:t") is None and await agent.get("other") is None
        await agent.set("fixed:t", 1, tags=["user:1"])  # not sliding: as before


def test_a_sliding_policy_needs_a_ttl() -> None:
    config = {"cache_policies": {"s": {"match": ["s:*"], "sliding": True}}}
    with pytest.raises(ConfigError, match=r"cache_policies\.s\.sliding"):
        CachingAgent.from_config(config, env={})


async def test_an_extension_costs_no_instance_its_l1_copy(
    engine: Any, prefix: str, heard: Any
) -> None:
    # The engine's tracking reports the extension as a change (client_tracking: auto);
    # its "t" notice says it is none.
    async with (
        CachingAgent.from_config(cfg(engine, prefix), env={}) as a,
        CachingAgent.from_config(cfg(engine, prefix), env={}) as b,
    ):
        await a.set("session:k", "v")
        await heard(b, 1)  # A's notice reaches B first: else it drops what B promotes
        assert await b.get("session:k") == "v"  # B's copy, promoted from L2
        assert "session:k" in b.l1
        assert a._toucher is not None
        sent = a._toucher.sent
        assert await a.get("session:k") == "v"  # an L1 hit: an extension queued
        for _ in range(50):
            if a._toucher.sent > sent:
                break
            await asyncio.sleep(0.01)
        assert a._toucher.sent > sent
        await asyncio.sleep(0.05)  # the engine's report has arrived by now
        assert "session:k" in a.l1 and "session:k" in b.l1
