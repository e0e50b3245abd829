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
from redis.asyncio.connection import AbstractConnection

from cache_core import CachingAgent, TierUnavailableError


def config_for(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4, "ttl": 60}, "l2": {"type": "redis"}},
    }


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    count = 0
    real = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        await real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return lambda: count


def break_settling(monkeypatch: pytest.MonkeyPatch, agent: CachingAgent) -> None:
    """Everything the client does after a write or delete lands fails (as when the caller
    gave up on a frozen engine before the reply came)."""

    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise TierUnavailableError("injected: the client went away")

    for name in ("record", "dependents", "forget"):
        monkeypatch.setattr(agent.index, name, fail)


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
    engine: Any, prefix: str, operation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        CachingAgent.from_config(config_for(engine, prefix), env={}) as a,
        CachingAgent.from_config(config_for(engine, prefix), env={}) as b,
    ):
        await a.set("source", 1)
        await a.set("child", 2, dependencies=["source"])
        await a.set("grandchild", 3, dependencies=["child"])
        assert await b.get("child") == 2 and "child" in b.l1
        break_settling(monkeypatch, a)
        with pytest.raises(TierUnavailableError):
            if operation == "overwrite":
                await a.set("source", 10)
            else:
                await a.delete("source")
        # L2 lost both with the write; both L1s, the writer's too, drop their copies.
        assert engine.client.exists(prefix + "child", prefix + "grandchild") == 0
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
        assert engine.client.exists(*(f"{prefix}dep:{i}" for i in range(10))) == 0
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
