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
from cache_plugins_redis.index import RedisIndex


def redis_index(agent: CachingAgent) -> RedisIndex:
    assert isinstance(agent.index, RedisIndex)
    return agent.index


def agent_of(l2_config: dict[str, Any]) -> CachingAgent:
    config = {**l2_config, "strategies": {"write_back": {"batch_size": 3, "flush_interval": 3600}}}
    return CachingAgent.from_config(config, env={})


async def settle(engine: Any, prefix: str, *agents: CachingAgent, flush: bool = True) -> None:
    """Every agent has applied every notice published so far (they arrive in order, so a
    marker published now comes after them), and (``flush``) its buffer is flushed."""
    marker = f"marker:{uuid.uuid4().hex}"
    for agent in agents:
        agent.l1.set(marker, b"", None)
    engine.client.publish(f"{prefix}__coherence__", b"test\nk\n" + marker.encode())
    deadline = time.monotonic() + 5
    for agent in agents:
        while marker in agent.l1:
            assert time.monotonic() < deadline, "the marker notice never arrived"
            await asyncio.sleep(0.002)
        if flush:
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


async def test_a_bump_noticed_while_a_tagged_write_is_indexed_still_reaches_it(
    l2_config: dict[str, Any], engine: Any, monkeypatch: Any
) -> None:
    """CI found it: B's invalidation of a tag was noticed by A while A's next write of the
    key, carrying that tag, was being indexed. The notice took the key off what A held
    under the tag before A held the new write, so B's next invalidation left it in A's
    L1 (the flush itself landed a tombstone)."""
    prefix = l2_config["redis"]["key_prefix"]
    async with agent_of(l2_config) as a, agent_of(l2_config) as b:
        await a.set("a:1", 1, strategy="write_back", tags=["blue"])
        send = redis_index(a)._send
        noticed = False

        async def send_noticing(round_: Any) -> list[Any]:
            nonlocal noticed
            if not noticed:
                noticed = True
                await b.invalidate_by_tags(["blue"])
                await settle(engine, prefix, a)  # A has applied B's notice, mid-record
            replies: list[Any] = await send(round_)
            return replies

        monkeypatch.setattr(redis_index(a), "_send", send_noticing)
        # Only the version bump reaches the key: its walk finds nothing (as where the
        # engine evicted the tag's set, or another write's settling dropped the link).
        monkeypatch.setattr(redis_index(b), "reap_later", lambda tags: None)
        await a.set("a:1", 3, strategy="write_back", tags=["red", "blue"])
        assert noticed
        monkeypatch.setattr(redis_index(a), "_send", send)
        await b.invalidate_by_tags(["blue"])
        await settle(engine, prefix, a, b, flush=False)
        # The notice alone drops A's copy (its buffered write goes to L2 at once, there to
        # land as a tombstone: it was made before the invalidation).
        assert await a.get("a:1") is None
        await settle(engine, prefix, a, b)
        assert await a.get("a:1") is None
        assert await b.get("a:1") is None


async def test_a_flush_refused_for_a_tags_floor_takes_the_writers_copy(
    l2_config: dict[str, Any], engine: Any, monkeypatch: Any
) -> None:
    """Should a bump's notice miss the writer's copy all the same, the flush it could not
    land says so, and the writer's L1 lets the write go with it."""
    prefix = l2_config["redis"]["key_prefix"]
    async with agent_of(l2_config) as a, agent_of(l2_config) as b:
        await a.set("a:1", 3, strategy="write_back", tags=["blue"])
        monkeypatch.setattr(redis_index(b), "reap_later", lambda tags: None)
        redis_index(a)._tier.tag_versions.release(["a:1"])
        await b.invalidate_by_tags(["blue"])
        await settle(engine, prefix, a, b, flush=False)
        assert a.l1.get("a:1") == b"3"  # the notice could not reach it
        await settle(engine, prefix, a, b)
        assert "a:1" not in a.l1
        assert await a.get("a:1") is None
        assert await b.get("a:1") is None


async def test_a_refused_flush_leaves_nothing_of_its_write_behind(
    l2_config: dict[str, Any], engine: Any, monkeypatch: Any
) -> None:
    """The links kept for a buffered write until its flush lands are forgotten when the
    flush is refused instead (stamped before its tag's floor): they would stay for good."""
    prefix = l2_config["redis"]["key_prefix"]
    async with agent_of(l2_config) as a, agent_of(l2_config) as b:
        await a.set("a:1", 3, strategy="write_back", tags=["blue"])
        await a.set("a:2", 4, strategy="write_back")
        monkeypatch.setattr(redis_index(b), "reap_later", lambda tags: None)
        redis_index(a)._tier.tag_versions.release(["a:1"])  # the notice misses A's copy
        await b.invalidate_by_tags(["blue"])
        await settle(engine, prefix, a, b)
        assert await a.get("a:1") is None
        assert await a.get("a:2") == 4
        kept = a.links._buffered_links, a.links._deferred  # type: ignore[union-attr]
        assert kept == ({}, {})


async def test_a_newer_buffered_write_keeps_its_links_when_an_older_flush_lands(
    l2_config: dict[str, Any], engine: Any
) -> None:
    """A write made while an older write of its key is being flushed keeps the links it
    recorded: the older flush's landing is not its own."""
    async with agent_of(l2_config) as a:
        await a.set("a:1", 1, strategy="write_back", tags=["red"])
        buffer = a.strategies["write_back"]
        send = buffer._send  # type: ignore[attr-defined]

        async def send_then_rewrite(l2: Any, items: Any) -> None:
            await send(l2, items)
            if items[0][1] == b"1":
                await a.set("a:1", 2, strategy="write_back", tags=["blue"])

        buffer._send = send_then_rewrite  # type: ignore[attr-defined]
        await buffer.flush()  # type: ignore[attr-defined]
        assert a.links._buffered_links == {"a:1": (["blue"], ())}  # type: ignore[union-attr]
