"""Several instances on one engine: none serves an L1 copy another instance replaced."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from aiohttp.test_utils import TestClient

from cache_core import CachingAgent
from cache_server import create_app

STALENESS_BOUND = 0.05  # seconds: README's documented bound on loopback


async def wait_for(predicate: Any, timeout: float = 2.0) -> float:
    """Seconds until ``predicate()`` (awaited) is true; fails past ``timeout``."""
    start = time.perf_counter()
    while not await predicate():
        assert time.perf_counter() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.0005)
    return time.perf_counter() - start


async def test_overwrite_on_a_reaches_b_within_the_bound(l2_config: dict[str, Any]) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        await a.set("k", 0)
        assert await b.get("k") == 0

        async def b_holds_a_copy() -> bool:
            # A read that overlapped A's notice is not promoted (by rule): the next one is.
            return bool(await b.lookup("k") == (b"0", "l1"))

        await wait_for(b_holds_a_copy)
        delays = []
        for i in range(1, 51):
            await a.set("k", i)

            async def b_sees_it(expected: int = i) -> bool:
                return bool(await b.get("k") == expected)

            delays.append(await wait_for(b_sees_it))
        assert max(delays) < STALENESS_BOUND, f"staleness p50={statistics.median(delays)}"


async def test_delete_and_pattern_on_a_drop_b_copies(l2_config: dict[str, Any], heard: Any) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        await a.set_many({"user:1:p": 1, "user:2:p": 2, "keep": 3})

        # Else B's read may overlap the write's notice, and is then not promoted (by rule).
        await heard(b, 1)
        assert await b.get_many(["user:1:p", "user:2:p", "keep"]) == {
            "user:1:p": 1,
            "user:2:p": 2,
            "keep": 3,
        }
        assert "keep" in b.l1 and "user:1:p" in b.l1
        await a.delete("keep")

        async def b_dropped_keep() -> bool:
            return "keep" not in b.l1

        assert await wait_for(b_dropped_keep) < STALENESS_BOUND
        await a.invalidate_pattern("user:*:p")

        async def b_dropped_all() -> bool:
            return not any(k in b.l1 for k in ("user:1:p", "user:2:p", "keep"))

        assert await wait_for(b_dropped_all) < STALENESS_BOUND
        assert await b.get_many(["user:1:p", "keep"]) == {"user:1:p": None, "keep": None}


async def test_an_instance_ignores_its_own_notices(l2_config: dict[str, Any]) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as a:
        await a.set("mine", 1)
        await asyncio.sleep(0.02)
        assert a.l2.notices_received == 0  # type: ignore[union-attr]
        assert await a.lookup("mine") == (b"1", "l1")


async def test_lost_subscription_clears_l1_before_serving_it_again(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as b:
        await b.set("k", "old")
        assert await b.lookup("k") == (b'"old"', "l1")
        tier = b.l2
        assert tier is not None and tier.coherent  # type: ignore[attr-defined]
        # Drop B's subscription, then change the value behind its back (no notice reaches it).
        engine.client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        frame = engine.client.get(prefix + "k")
        engine.client.set(prefix + "k", frame.replace(b'"old"', b'"new"'))

        async def resubscribed() -> bool:
            return bool(tier.coherent) and "k" not in b.l1  # type: ignore[attr-defined]

        await wait_for(resubscribed, timeout=5)
        assert await b.lookup("k") == (b'"new"', "l2")


async def test_two_servers_b_never_serves_a_replaced_value(
    aiohttp_client: Any, l2_config: dict[str, Any]
) -> None:
    a: TestClient[Any, Any] = await aiohttp_client(create_app(l2_config, env={}))
    b: TestClient[Any, Any] = await aiohttp_client(create_app(l2_config, env={}))
    await a.post("/cache", json={"key": "user:9:profile", "value": {"v": 1}})
    first = await (await b.get("/cache/user:9:profile")).json()
    assert first["value"] == {"v": 1}

    async def b_serves_l1() -> bool:
        # A read that overlapped A's notice is not promoted (by rule): the next one is.
        return bool((await (await b.get("/cache/user:9:profile")).json())["tier"] == "l1")

    await wait_for(b_serves_l1)
    await a.post("/cache", json={"key": "user:9:profile", "value": {"v": 2}})

    async def b_serves_new() -> bool:
        body = await (await b.get("/cache/user:9:profile")).json()
        return bool(body["value"] == {"v": 2})

    assert await wait_for(b_serves_new) < STALENESS_BOUND
    await a.delete("/cache/user:9:profile")

    async def b_misses() -> bool:
        body = await (await b.get("/cache/user:9:profile")).json()
        return body["hit"] is False

    assert await wait_for(b_misses) < STALENESS_BOUND


async def test_a_newer_write_elsewhere_replaces_this_instance_s_own_held_write(
    l2_config: dict[str, Any],
) -> None:
    """Found by the two-agent model: A's buffered (write_back) value of a key outlived B's
    later write of it on A until A's flush. B's notice now flushes A's write of that key at
    once (refused as older), and A's read waits for that."""
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        await a.set("k", "a's, older", strategy="write_back")
        heard = a.l2.notices_received  # type: ignore[union-attr]
        await b.set("k", "b's, newer", strategy="write_through")

        async def a_heard_it() -> bool:
            return bool(a.l2.notices_received > heard)  # type: ignore[union-attr]

        await wait_for(a_heard_it)
        assert await a.get("k") == "b's, newer"
