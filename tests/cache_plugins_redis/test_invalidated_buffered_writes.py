"""A write_back write another instance's tag invalidation reaches before it is flushed is
gone, and so is what L2 held before it: the invalidation removed the key's newest value,
and an older one must not come back in its place (the two-agent model test found both
cases below, under load)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from cache_core import CachingAgent


def agent_of(l2_config: dict[str, Any]) -> CachingAgent:
    config = {**l2_config, "strategies": {"write_back": {"batch_size": 3, "flush_interval": 3600}}}
    return CachingAgent.from_config(config, env={})


async def settle(engine: Any, prefix: str, *agents: CachingAgent) -> None:
    """Every agent has applied every notice published so far (they arrive in order, so a
    marker published now comes after them), and its buffer is flushed."""
    marker = f"marker:{uuid.uuid4().hex}"
    for agent in agents:
        agent.l1.set(marker, b"", None)
    engine.client.publish(f"{prefix}__coherence__", b"test\nk\n" + marker.encode())
    deadline = time.monotonic() + 5
    for agent in agents:
        while marker in agent.l1:
            assert time.monotonic() < deadline, "the marker notice never arrived"
            await asyncio.sleep(0.002)
        await agent.strategies["write_back"].flush()  # type: ignore[attr-defined]


async def test_a_buffered_tagged_write_invalidated_elsewhere_leaves_no_older_value(
    l2_config: dict[str, Any], engine: Any
) -> None:
    async with agent_of(l2_config) as a, agent_of(l2_config) as b:
        await a.set("a:1", 1)
        await a.set("a:1", 2, strategy="write_back", tags=["red"])
        await b.invalidate_by_tags(["red"])
        # A's flush comes before B's walk of what the tag listed has reached the key: the
        # flush itself must leave no value 1 behind.
        await a.strategies["write_back"].flush()  # type: ignore[attr-defined]
        assert await b.get("a:1") is None
        assert await a.get("a:1") is None
        await settle(engine, l2_config["redis"]["key_prefix"], a, b)
        assert await a.get("a:1") is None
        assert await b.get("a:1") is None


async def test_a_rewrite_after_an_invalidation_keeps_its_own_tag_version(
    l2_config: dict[str, Any], engine: Any
) -> None:
    async with agent_of(l2_config) as a, agent_of(l2_config) as b:
        await a.set("a:1", 1, strategy="write_back", tags=["blue"])
        await b.set("a:1", 2, strategy="write_back")
        await b.invalidate_by_tags(["blue"])
        await a.set("a:1", 3, strategy="write_back", tags=["red", "blue"])
        await b.invalidate_by_tags(["blue"])
        await settle(engine, l2_config["redis"]["key_prefix"], a, b)
        assert await a.get("a:1") is None
        assert await b.get("a:1") is None
