"""agent.lock across instances on the real engine: exclusion, fencing tokens that only
grow, a dead holder's lease freeing the lock, extend, a clear timeout, bad arguments, lock
keys kept apart from cache keys; and the same API on an agent with L1 alone."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cache_core import (
    CachingAgent,
    InvalidKeyError,
    InvalidValueError,
    LockLostError,
    LockTimeoutError,
)

L1_ONLY = {"cache_tiers": {"l1": {"max_size_mb": 4}}, "compression": {"enable": False}}


async def test_one_holder_at_a_time_across_instances_with_growing_tokens(
    l2_config: dict[str, Any],
) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        inside = 0
        most = 0
        tokens: list[int] = []
        total = 0

        async def work(agent: CachingAgent) -> None:
            nonlocal inside, most, total
            async with agent.lock("report", lease=5, timeout=10) as lock:
                tokens.append(lock.token)
                inside += 1
                most = max(most, inside)
                seen = total
                await asyncio.sleep(0.002)  # a read-modify-write another holder would tear
                total = seen + 1
                inside -= 1

        await asyncio.gather(*(work(agent) for _ in range(15) for agent in (a, b)))
        assert (most, total) == (1, 30)
        assert tokens == sorted(tokens) and len(set(tokens)) == 30  # each larger than before


async def test_a_held_lock_times_out_the_others_clearly(l2_config: dict[str, Any]) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        async with a.lock("job", lease=5) as held:
            start = time.monotonic()
            with pytest.raises(LockTimeoutError, match=r"'job' not acquired within 0\.2 s"):
                async with b.lock("job", timeout=0.2):
                    pass
            assert 0.2 <= time.monotonic() - start < 1.0
            first = held.token
        async with b.lock("job", timeout=0) as lock:  # released: taken at once
            assert lock.token > first


async def test_a_dead_holders_lease_frees_the_lock_and_the_late_release_says_so(
    l2_config: dict[str, Any],
) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        stalled = a.lock("sweep", lease=0.2)
        first = await stalled.acquire()  # and never released in time: a holder that stalled
        start = time.monotonic()
        async with b.lock("sweep", timeout=3) as lock:
            assert time.monotonic() - start < 1.5  # the lease (0.2 s), not the timeout
            assert lock.token > first
            with pytest.raises(LockLostError, match="ran out while held"):
                await stalled.release()  # must not release B's hold
            with pytest.raises(LockTimeoutError):  # still B's
                await a.lock("sweep", timeout=0.05).acquire()


async def test_extend_keeps_the_lock_past_its_first_lease(l2_config: dict[str, Any]) -> None:
    async with (
        CachingAgent.from_config(l2_config, env={}) as a,
        CachingAgent.from_config(l2_config, env={}) as b,
    ):
        async with a.lock("long", lease=0.3) as lock:
            await lock.extend(5)
            await asyncio.sleep(0.5)
            with pytest.raises(LockTimeoutError):
                await b.lock("long", timeout=0.1).acquire()
        lost = a.lock("short", lease=0.1)
        await lost.acquire()
        await asyncio.sleep(0.3)
        with pytest.raises(LockLostError, match="before it was extended"):
            await lost.extend()


async def test_a_block_that_raises_releases_the_lock_and_keeps_its_error(
    l2_config: dict[str, Any],
) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as a:

        async def failing(lease: float, pause: float) -> None:
            async with a.lock("fails", lease=lease):
                await asyncio.sleep(pause)
                raise KeyError("the block's own error")

        with pytest.raises(KeyError):
            await failing(5, 0)
        async with a.lock("fails", timeout=0):
            pass
        # Lost while the block raised: the block's error, not LockLostError, comes out.
        with pytest.raises(KeyError):
            await failing(0.05, 0.2)


async def test_lock_keys_are_neither_counted_nor_swept(l2_config: dict[str, Any]) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as a:
        await a.set("k", 1)
        async with a.lock("*", lease=5):
            assert await a.invalidate_pattern("*") == 1
            assert (await a.fetch_stats())["l2_size_keys"] == 0
            with pytest.raises(LockTimeoutError):  # the sweep left the lock alone
                await a.lock("*", timeout=0).acquire()


async def test_bad_arguments_are_refused_before_anything_is_sent(
    l2_config: dict[str, Any],
) -> None:
    async with CachingAgent.from_config(l2_config, env={}) as a:
        for lease in (0, -1, float("nan"), float("inf"), 10**12, "5"):
            with pytest.raises(InvalidValueError, match="lease"):
                a.lock("x", lease=lease)  # type: ignore[arg-type]
        for timeout in (-1, float("nan"), 10**6):
            with pytest.raises(InvalidValueError, match="timeout"):
                a.lock("x", timeout=timeout)
        for name in ("", "x" * 100_000, "a\nb"):
            with pytest.raises(InvalidKeyError):
                a.lock(name)
        lock = a.lock("x")
        with pytest.raises(RuntimeError, match="not held"):
            _ = lock.token


async def test_cluster_locks_keep_lock_and_token_in_one_slot(
    cluster_config: dict[str, Any],
) -> None:
    config = {**cluster_config, "redis": {**cluster_config["redis"], "key_prefix": "c{x:"}}
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        for name in ("plain", "with}brace", "{tagged}", "}x", "}", "{}"):
            async with a.lock(name, lease=5) as held:
                first = held.token
                with pytest.raises(LockTimeoutError):
                    await b.lock(name, timeout=0).acquire()
            async with b.lock(name, timeout=0) as second:
                assert second.token > first


async def test_an_agent_with_l1_alone_locks_within_its_process() -> None:
    async with CachingAgent.from_config(L1_ONLY, env={}) as agent:
        order: list[int] = []

        async def work() -> None:
            async with agent.lock("local", lease=5) as lock:
                order.append(lock.token)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(work() for _ in range(10)))
        assert order == sorted(order) and len(set(order)) == 10
        stalled = agent.lock("dead", lease=0.05)
        first = await stalled.acquire()
        async with agent.lock("dead", timeout=1) as lock:
            assert lock.token > first
        with pytest.raises(LockLostError):
            await stalled.release()
