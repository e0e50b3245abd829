"""Auto-pipelining of writes on a real engine: pipelines executed in one tick share one
round trip, keep their order, and fail or give up on their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import asyncio as aioredis
from redis.exceptions import ResponseError

from cache_core import CachingAgent
from cache_plugins_redis.autopipeline import CoalescingClient, TickBatcher


@pytest.fixture
async def client(engine: Any) -> AsyncIterator[CoalescingClient]:
    pool = aioredis.BlockingConnectionPool.from_url(
        engine.url, max_connections=4, timeout=5, socket_timeout=5
    )
    coalescing = CoalescingClient(aioredis.Redis.from_pool(pool))
    yield coalescing
    await coalescing.aclose()


async def test_pipelines_of_one_tick_are_one_round_in_order(
    client: CoalescingClient, prefix: str, count_rounds: Any
) -> None:
    rounds = count_rounds(client)

    async def write(i: int) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.set(f"{prefix}k{i}", i)
        pipe.incr(f"{prefix}counter")
        return await pipe.execute()

    replies = await asyncio.gather(*(write(i) for i in range(50)))
    assert rounds == [50]
    assert [reply[0] for reply in replies] == [True] * 50
    assert [reply[1] for reply in replies] == list(range(1, 51))  # in the order executed
    assert await client.get(f"{prefix}k49") == b"49"


async def test_a_command_error_belongs_to_its_own_request(
    client: CoalescingClient, prefix: str
) -> None:
    await client.set(f"{prefix}text", "not a number")

    async def bad() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.incr(f"{prefix}text")
        return await pipe.execute()

    async def good() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.set(f"{prefix}ok", 1)
        pipe.get(f"{prefix}ok")
        return await pipe.execute()

    async def tolerant() -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.incr(f"{prefix}text")
        return await pipe.execute(raise_on_error=False)

    outcomes = await asyncio.gather(bad(), good(), tolerant(), return_exceptions=True)
    assert isinstance(outcomes[0], ResponseError)
    assert outcomes[1] == [True, b"1"]
    assert isinstance(outcomes[2], list) and isinstance(outcomes[2][0], ResponseError)


async def test_a_request_that_gives_up_leaves_the_others_their_writes(
    client: CoalescingClient, prefix: str
) -> None:
    async def write(key: str) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.set(prefix + key, 1)
        return await pipe.execute()

    quitter = asyncio.create_task(write("a"))
    stayer = asyncio.create_task(write("b"))
    await asyncio.sleep(0)  # both queued in this tick
    quitter.cancel()
    assert await stayer == [True]
    assert quitter.cancelled()
    assert await client.exists(prefix + "b") == 1


async def test_concurrent_agent_writes_share_round_trips(
    engine: Any, prefix: str, count_rounds: Any
) -> None:
    config = {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
    }
    async with CachingAgent.from_config(config, env={}) as agent:
        assert agent.l2 is not None
        rounds = count_rounds(agent.l2)
        await asyncio.gather(*(agent.set(f"k{i}", i) for i in range(40)))
        # One script call each (its link check inside), all in one round trip or two.
        assert len(rounds) <= 2 and sum(rounds) == 40, rounds
        agent.l1.clear()
        assert await agent.get_many([f"k{i}" for i in range(40)]) == {f"k{i}": i for i in range(40)}


async def test_a_submitter_that_gives_up_before_its_tick_sends_nothing() -> None:
    """Cancelled while it waits out its tick, a lone submitter's item is not sent (the
    engine would do work nobody reads); a second submitter of that tick still gets its
    answer."""
    sent: list[list[str]] = []

    async def run(items: list[str]) -> list[str]:
        sent.append(list(items))
        return [item.upper() for item in items]

    batcher: TickBatcher[str, str] = TickBatcher(run)
    lone = asyncio.ensure_future(batcher.submit("a"))
    await asyncio.sleep(0)  # it is waiting out its tick
    lone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lone
    assert sent == []
    first = asyncio.ensure_future(batcher.submit("b"))
    second = asyncio.ensure_future(batcher.submit("c"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "C"
    assert sent == [["c"]]
