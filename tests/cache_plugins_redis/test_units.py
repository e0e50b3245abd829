"""One operation, one script call: a plain write or delete sends its value (or unlink), the
check of its keys' links and its coherence notice together, and removes what depended on
the old values in that same step, so nothing is left behind when whatever follows it on
the client (the index's settling) never runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from cache_core import CachingAgent, TierUnavailableError


def config_for(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4, "ttl": 60}, "l2": {"type": "redis"}},
    }


def lose_replies(monkeypatch: pytest.MonkeyPatch, agent: CachingAgent) -> None:
    """Every script call reaches the engine and runs, and its reply is lost (as when the
    caller gave up on a frozen engine before the reply came): nothing the client would do
    after it happens."""
    tier: Any = agent.l2
    real = tier._send_calls

    async def sent_then_lost(*args: Any) -> Any:
        await real(*args)
        raise ConnectionError("injected: the reply was lost")

    monkeypatch.setattr(tier, "_send_calls", sent_then_lost)


async def until(check: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def test_a_plain_write_or_delete_is_one_round_trip(
    engine: Any, prefix: str, sends: Callable[[], int]
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        for work in (
            lambda: agent.set("k", 1),
            lambda: agent.set("k", 2, strategy="write_around"),
            lambda: agent.set_many({"a": 1, "b": 2}),
            lambda: agent.delete("k"),
            lambda: agent.delete("never-written"),
        ):
            before = sends()
            await work()
            assert sends() - before == 1


@pytest.mark.parametrize("operation", ["overwrite", "delete"])
async def test_dependents_go_in_the_same_step_as_the_write_or_delete(
    engine: Any, prefix: str, operation: str, monkeypatch: pytest.MonkeyPatch, heard: Any
) -> None:
    async with (
        CachingAgent.from_config(config_for(engine, prefix), env={}) as a,
        CachingAgent.from_config(config_for(engine, prefix), env={}) as b,
    ):
        await a.set("source", 1)
        await a.set("child", 2, dependencies=["source"])
        await a.set("grandchild", 3, dependencies=["child"])
        # Else B's read may overlap A's notices, and is then not promoted (by rule).
        await heard(b, 3)
        assert await b.get("child") == 2 and "child" in b.l1
        lose_replies(monkeypatch, a)
        work = a.set("source", 10) if operation == "overwrite" else a.delete("source")
        with pytest.raises(TierUnavailableError):
            await work
        # L2 lost both with the write; both L1s, the writer's too, drop their copies.
        assert engine.entries(prefix + "child", prefix + "grandchild") == 0
        assert await until(lambda: "child" not in b.l1 and "child" not in a.l1)
        assert "grandchild" not in a.l1
        assert await b.get("source") == (10 if operation == "overwrite" else None)


async def test_a_cascade_past_one_calls_limit_still_removes_every_dependent(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("cache_plugins_redis.tier.CASCADE_LIMIT", 3)
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("source", 1)
        for i in range(10):
            await agent.set(f"dep:{i}", i, dependencies=["source"])
        assert await agent.delete("source")
        assert engine.entries(*(f"{prefix}dep:{i}" for i in range(10))) == 0
        assert [await agent.get(f"dep:{i}") for i in range(10)] == [None] * 10


async def test_a_unit_of_several_calls_never_removes_a_key_it_writes(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dependent of one call's key written by a later call of the same set_many stays
    (each call's cascade would see only its own keys to spare)."""
    monkeypatch.setattr("cache_plugins_redis.tier.SCRIPT_BATCH", 2)
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("z-source", 1)
        await agent.set("a-dependent", 2, dependencies=["z-source"])
        items = {"a-dependent": 20, "m": 0, "n": 0, "z-source": 10}
        await agent.set_many(items)
        agent.l1.clear()
        assert await agent.get_many(list(items)) == items


async def test_a_tagged_overwrite_whose_reply_is_lost_has_its_index_exact(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Value and index went in one step: the new tags reach the new value, the old ones no
    longer do, though the writer never heard back."""
    async with (
        CachingAgent.from_config(config_for(engine, prefix), env={}) as a,
        CachingAgent.from_config(config_for(engine, prefix), env={}) as b,
    ):
        await a.set("k", "old", tags=["old", "both"])
        with monkeypatch.context() as patch:
            lose_replies(patch, a)
            with pytest.raises(TierUnavailableError):
                await a.set("k", "new", tags=["new", "both"], dependencies=["src"])
        assert await b.invalidate_by_tags(["old"]) == 0
        assert await b.get("k") == "new"
        assert await b.delete("src") is False  # never written; its dependent goes with it
        assert engine.entries(prefix + "k") == 0
        await a.set("k", "again", tags=["new"])
        assert await b.invalidate_by_tags(["new"]) == 1


async def test_a_delete_drops_the_writers_own_buffered_dependent(engine: Any, prefix: str) -> None:
    """Found by the two-agent model: a dependent held only in the deleter's write buffer
    has no L2 entry for the script to remove; the step still reports it, so the deleter
    drops its buffered copy instead of serving it until its flush is refused."""
    config = {
        **config_for(engine, prefix),
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("child", 1, strategy="write_back", dependencies=["source"])
        assert await agent.delete("source") is False
        assert await agent.get("child") is None
        assert await agent.strategies["write_back"].flush() == 0  # type: ignore[attr-defined]
