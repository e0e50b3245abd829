"""Server-assisted coherence (redis.client_tracking): a change no instance of ours made (a
foreign client's SET or DEL, a FLUSHALL, an eviction, an expiry) drops every instance's L1
copy within the documented bound; with tracking off, it is served stale (what tracking is
for). FLUSHALL and eviction run on a private engine: the session's is shared."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from redis import asyncio as aioredis
from tests.cache_plugins_redis.test_coherence import STALENESS_BOUND, wait_for

from cache_core import CachingAgent
from cache_core.errors import ConfigError

Pair = tuple[CachingAgent, CachingAgent]


def config(url: str, prefix: str, tracking: str = "auto") -> dict[str, Any]:
    return {
        "redis": {"url": url, "key_prefix": prefix, "client_tracking": tracking},
        "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": 60}, "l2": {"type": "redis", "ttl": 3600}},
    }


@asynccontextmanager
async def two_holding(conf: dict[str, Any], key: str, value: str) -> AsyncIterator[Pair]:
    """Two instances, both holding ``key`` = ``value`` in L1."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(CachingAgent.from_config(conf, env={}))
        b = await stack.enter_async_context(CachingAgent.from_config(conf, env={}))
        await a.set(key, value)

        async def both_hold() -> bool:
            # B's read may overlap A's notice, and is then not promoted (by rule).
            await b.get(key)
            held = [await agent.lookup(key) for agent in (a, b)]
            return held == [(f'"{value}"'.encode(), "l1")] * 2

        await wait_for(both_hold)
        yield a, b


async def dropped_everywhere(pair: Pair, key: str) -> float:
    """Seconds until neither instance holds ``key`` in L1 (fails past 2 s)."""

    async def gone() -> bool:
        return all(key not in agent.l1 for agent in pair)

    return await wait_for(gone)


def replaced(frame: bytes, old: str, new: str) -> bytes:
    """The stored frame with the value swapped: a foreign client's write the agent reads."""
    assert len(old) == len(new)  # (the frame's header records no length, but be plain)
    return frame.replace(f'"{old}"'.encode(), f'"{new}"'.encode())


@pytest.mark.parametrize("tracking", ["auto", "off"])
async def test_a_foreign_set_drops_every_copy_within_the_bound(
    engine: Any, prefix: str, tracking: str
) -> None:
    async with two_holding(config(engine.url, prefix, tracking), "k", "old") as pair:
        frame = engine.client.get(prefix + "k")
        engine.client.set(prefix + "k", replaced(frame, "old", "new"))
        if tracking == "off":
            # What the project's notices alone leave: both serve the old value from L1.
            await asyncio.sleep(0.2)
            assert [await agent.lookup("k") for agent in pair] == [(b'"old"', "l1")] * 2
            return
        delay = await dropped_everywhere(pair, "k")
        assert delay < STALENESS_BOUND
        assert [await agent.get("k") for agent in pair] == ["new", "new"]
        assert all(agent.l2.invalidations_received >= 1 for agent in pair)  # type: ignore[union-attr]


async def test_a_foreign_delete_drops_every_copy_within_the_bound(engine: Any, prefix: str) -> None:
    async with two_holding(config(engine.url, prefix), "k", "old") as pair:
        engine.client.delete(prefix + "k")
        assert await dropped_everywhere(pair, "k") < STALENESS_BOUND
        assert [await agent.get("k") for agent in pair] == [None, None]


@pytest.mark.parametrize("tracking", ["auto", "off"])
async def test_a_foreign_expiry_drops_every_copy_within_the_bound(
    engine: Any, prefix: str, tracking: str
) -> None:
    """A TTL shortened behind the instances' backs (L1's own TTL was capped by the one L2
    had when the entry was written): both have dropped their copies within the bound of
    the entry's expiry."""
    async with two_holding(config(engine.url, prefix, tracking), "k", "old") as pair:
        engine.client.pexpire(prefix + "k", 20)
        expired_at = time.perf_counter() + 0.02
        await asyncio.sleep(0.02 + STALENESS_BOUND)
        assert time.perf_counter() - expired_at >= STALENESS_BOUND
        assert engine.client.exists(prefix + "k") == 0
        served = [await agent.lookup("k") for agent in pair]
        if tracking == "off":
            assert served == [(b'"old"', "l1")] * 2  # served for L1's whole TTL
        else:
            assert served == [None, None]


async def test_a_flushall_empties_every_l1(private_engine: Any, prefix: str) -> None:
    async with two_holding(config(private_engine.url, prefix), "k", "old") as pair:
        a, _ = pair
        await a.set("other", "x")
        private_engine.client.flushall()
        assert await dropped_everywhere(pair, "k") < STALENESS_BOUND
        assert all(len(agent.l1) == 0 for agent in pair)
        assert [await agent.get("k") for agent in pair] == [None, None]
        assert all(agent.l2.coherent for agent in pair)  # type: ignore[union-attr]


async def test_an_eviction_drops_every_copy_within_the_bound(
    private_engine: Any, prefix: str
) -> None:
    # An engine of one's own may evict any key: the agent reads its policy, never sets it.
    private_engine.client.config_set("maxmemory", "4mb")
    private_engine.client.config_set("maxmemory-policy", "allkeys-random")
    async with two_holding(config(private_engine.url, prefix), "k", "old") as pair:
        foreign = aioredis.Redis(host="127.0.0.1", port=private_engine.port)
        try:
            for n in range(200):
                pipe = foreign.pipeline(transaction=False)
                for i in range(50):
                    pipe.set(f"fill:{n}:{i}", b"x" * 4096)
                await pipe.execute()
                if not await foreign.exists(prefix + "k"):
                    break
            else:
                pytest.fail("the engine never evicted the entry")
            evicted = (await foreign.info("stats"))["evicted_keys"]
        finally:
            await foreign.aclose()
        assert evicted > 0
        assert await dropped_everywhere(pair, "k") < STALENESS_BOUND
        assert [await agent.get("k") for agent in pair] == [None, None]


async def test_own_writes_keep_their_l1_copy(engine: Any, prefix: str) -> None:
    """BCAST reports the instance's own writes too; its notice spares them (else every
    write would cost the writer its fresh copy, and the next read an L2 round trip)."""
    async with CachingAgent.from_config(config(engine.url, prefix), env={}) as a:
        assert a.l2.coherence == "tracking+notices"  # type: ignore[union-attr]
        for i in range(20):
            await a.set(f"mine:{i}", i)
        await a.set_many({"m1": 1, "m2": 2})
        await asyncio.sleep(0.05)
        assert a.l2.invalidations_received == 0  # type: ignore[union-attr]
        assert await a.lookup("mine:19") == (b"19", "l1")
        assert await a.lookup("m2") == (b"2", "l1")
        # A foreign write after them is not taken for an echo.
        frame = engine.client.get(prefix + "m2")
        engine.client.set(prefix + "m2", frame)  # (the same bytes: still a change)

        async def dropped() -> bool:
            return "m2" not in a.l1

        assert await wait_for(dropped) < STALENESS_BOUND


def _tracking_connection(engine: Any, agent: CachingAgent) -> int:
    """The id of ``agent``'s subscription connection (its tracking one)."""
    name = f"caching-agent-{agent.l2.instance_id}"  # type: ignore[union-attr]
    for client in engine.client.client_list():
        if client["name"] == name and "P" in client["flags"]:
            return int(client["id"])
    raise AssertionError("no subscription connection found")


async def test_a_lost_tracking_connection_bypasses_then_empties_l1(
    engine: Any, prefix: str
) -> None:
    async with two_holding(config(engine.url, prefix), "k", "old") as (a, b):
        tier: Any = b.l2
        engine.client.client_kill_filter(_id=_tracking_connection(engine, b))
        frame = engine.client.get(prefix + "k")

        async def lost() -> bool:
            return not tier.coherent

        await wait_for(lost)
        # Changed while B hears nothing: B reads L2 meanwhile, then starts with L1 empty.
        engine.client.set(prefix + "k", replaced(frame, "old", "new"))
        assert await b.lookup("k") == (b'"new"', "l2")

        async def restored() -> bool:
            return bool(tier.coherent)

        await wait_for(restored, timeout=5)
        assert "k" not in b.l1 and tier.coherence == "tracking+notices"
        assert await a.get("k") == "new"  # A, still tracking, dropped its copy
        # Tracking again after the restore: a foreign change reaches B's new connection.
        await b.get("k")

        async def b_holds() -> bool:
            await b.get("k")
            return bool(await b.lookup("k") == (b'"new"', "l1"))

        await wait_for(b_holds)
        engine.client.set(prefix + "k", frame)
        assert await dropped_everywhere((a, b), "k") < STALENESS_BOUND


def _acl_without_tracking(engine: Any) -> None:
    engine.client.execute_command(
        "ACL", "SETUSER", "default", "on", "nopass", "~*", "&*", "+@all", "-client|tracking"
    )


async def test_where_the_engine_refuses_tracking_notices_alone_and_health_says_so(
    private_engine: Any, prefix: str
) -> None:
    _acl_without_tracking(private_engine)
    async with CachingAgent.from_config(config(private_engine.url, prefix), env={}) as a:
        assert a.l2.coherent  # type: ignore[union-attr]
        l2 = a.health()["tiers"]["l2"]
        assert l2["coherence"] == "notices" and a.health()["status"] == "ok"
        await a.set("k", 1)
        assert await a.lookup("k") == (b"1", "l1")


async def test_tracking_on_where_the_engine_refuses_it_never_serves_l1(
    private_engine: Any, prefix: str
) -> None:
    _acl_without_tracking(private_engine)
    async with CachingAgent.from_config(config(private_engine.url, prefix, "on"), env={}) as a:
        assert not a.l2.coherent  # type: ignore[union-attr]
        assert a.health()["status"] == "degraded"
        await a.set("k", 1)
        assert await a.lookup("k") == (b"1", "l2")


async def test_health_names_the_coherence_in_use(engine: Any, prefix: str) -> None:
    for tracking, expected in (("auto", "tracking+notices"), ("off", "notices")):
        async with CachingAgent.from_config(config(engine.url, prefix, tracking), env={}) as a:
            assert a.health()["tiers"]["l2"]["coherence"] == expected


async def test_cluster_keeps_notices_alone(cluster_config: dict[str, Any]) -> None:
    async with CachingAgent.from_config(cluster_config, env={}) as a:
        assert a.health()["tiers"]["l2"]["coherence"] == "notices"
    on = {**cluster_config, "redis": {**cluster_config["redis"], "client_tracking": "on"}}
    with pytest.raises(ConfigError, match="client_tracking"):
        CachingAgent.from_config(on, env={})


async def test_sentinel_tracks_on_the_master(sentinel: tuple[Any, Any], prefix: str) -> None:
    master, watcher = sentinel
    conf = {
        "redis": {
            "sentinel": {
                "master_name": "mymaster",
                "nodes": [{"host": "127.0.0.1", "port": watcher.port}],
            },
            "key_prefix": prefix,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": 60}, "l2": {"type": "redis"}},
    }
    async with two_holding(conf, "k", "old") as pair:
        for agent in pair:
            assert agent.health()["tiers"]["l2"]["coherence"] == "tracking+notices"
        frame = master.client.get(prefix + "k")
        master.client.set(prefix + "k", replaced(frame, "old", "new"))
        assert await dropped_everywhere(pair, "k") < STALENESS_BOUND
        assert [await agent.get("k") for agent in pair] == ["new", "new"]
