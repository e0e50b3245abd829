"""A pattern sweep over a large L1 yields to the event loop: one invalidation of a
million-key L1 must not stop every other request while it walks the keys."""

from __future__ import annotations

import asyncio
from typing import Any

from cache_core import CachingAgent
from cache_core.l1_coherence import SWEEP_CHUNK


async def test_a_pattern_sweep_of_a_large_l1_lets_others_run(
    make_agent: Any, base_config: Any
) -> None:
    agent: CachingAgent = await make_agent(
        base_config(cache_tiers={"l1": {"type": "memory", "max_size_mb": 64, "ttl": None}})
    )
    count = SWEEP_CHUNK * 5
    for i in range(count):
        agent.l1.set(f"k:{i}", b"1", None)
    agent.l1.set("other", b"2", None)
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    removed = await agent.invalidate_pattern("k:*")
    during = ticks - before
    stop = True
    await task
    assert removed == count
    assert len(agent.l1) == 1 and "other" in agent.l1
    assert during >= 4, f"the sweep yielded {during} times over {count} keys"


async def test_a_pattern_notice_over_a_large_l1_is_swept_in_the_background(
    make_agent: Any, base_config: Any
) -> None:
    """Another instance's pattern notice arrives in the subscriber's callback: over a large
    L1 it must not sweep there, in one go, but in a task that yields."""
    agent: CachingAgent = await make_agent(
        base_config(cache_tiers={"l1": {"type": "memory", "max_size_mb": 64, "ttl": None}})
    )
    for i in range(SWEEP_CHUNK * 3):
        agent.l1.set(f"k:{i}", b"1", None)
    agent.l1.set("other", b"2", None)
    agent.coherence.pattern_changed("k:*")
    assert len(agent.l1) > SWEEP_CHUNK  # not swept in the callback itself
    assert agent.coherence.sweeps
    await asyncio.gather(*agent.coherence.sweeps)
    assert len(agent.l1) == 1 and "other" in agent.l1
