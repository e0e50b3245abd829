"""Round trips of the L2 data path, counted at the socket: framing and the frame check
happen in core, around the tier's calls, and add none. A read is one MGET (reads of one
tick share it); a frame of format 1 (no expiry inside) adds its PTTL; a write of keys
without links is one script call with its coherence notice (a write_back write: nothing,
its index travels with the flush)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.cache_plugins_redis.test_coherence import wait_for

from cache_core import CachingAgent


async def rounds_of(sends: Callable[[], int], work: Any) -> int:
    before = sends()
    await work
    return sends() - before


async def test_l2_reads_and_writes_take_the_round_trips_they_did(
    engine: Any, prefix: str, sends: Callable[[], int]
) -> None:
    config = {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "compression": {"threshold_bytes": 64},
    }
    large = {"items": [f"item {i}" for i in range(100)]}  # compressed
    async with CachingAgent.from_config(config, env={}) as agent:
        # One script call: the value, the check of its key's links, the notice.
        assert await rounds_of(sends, agent.set("k", large, strategy="write_around")) == 1
        assert await rounds_of(sends, agent.set("t", large)) == 1  # write_through
        assert await rounds_of(sends, agent.set_many({"a": 1, "b": large})) == 1
        # write_back puts nothing on the wire in the request: its index travels with the flush
        assert await rounds_of(sends, agent.set("wb", 1, strategy="write_back")) == 0
        assert await rounds_of(sends, agent.get("k")) == 1  # not in L1: write_around
        agent.l1.clear()
        assert await rounds_of(sends, agent.get_many(["a", "b", "k", "none"])) == 1
        agent.l1.clear()
        together = asyncio.gather(*(agent.get(key) for key in ("a", "b", "k", "none")))
        assert await rounds_of(sends, together) == 1
        tier: Any = agent.l2
        heard = tier.invalidations_received
        engine.client.set(prefix + "v1", b"\xca\x01\x00" + b'"old"', px=60_000)
        # A foreign write: its invalidation (redis.client_tracking) must not land on the
        # copy the read below promotes.

        async def heard_it() -> bool:
            return bool(tier.invalidations_received > heard)

        await wait_for(heard_it)
        assert await rounds_of(sends, agent.get("v1")) == 2
        l1: Any = agent.l1
        assert 0 < l1.ttl_remaining("v1") <= 60  # the engine's TTL, from the PTTL
