"""Runtime registrations against a real engine when things go wrong: names the index
cannot store, a server that refuses, L2 away, awaiting before start; and the caller's
pattern limits on a subscription fired without context."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from cache_core import CacheError, CachingAgent
from cache_plugins_invalidation import InvalidationManager

OPERATION_TIMEOUT = 0.3


def redis_config(engine: Any, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "invalidation": {"backend": "redis"},
        "circuit_breaker": {
            "operation_timeout": OPERATION_TIMEOUT,
            "failure_threshold": 2,
            "reset_timeout": 0.5,
        },
        "strategies": {"write_back": {"batch_size": 100, "flush_interval": 60}},
        **extra,
    }


# -- registrations ------------------------------------------------------------------------


async def test_one_bad_event_name_does_not_block_every_later_write(
    engine: Any, prefix: str
) -> None:
    """An event name the index cannot store (a lone surrogate: not encodable for Redis) is
    queued rather than refused at the call; at the head of the queue it then fails every
    write, delete and invalidation of the instance from then on, for good."""
    async with CachingAgent.from_config(redis_config(engine, prefix), env={}) as agent:
        with contextlib.suppress(CacheError):  # refused at the call (README's promise): fine
            agent.invalidation_manager.register_event_subscription("\ud800", "x")
        await asyncio.sleep(0.05)  # the background tried once
        await agent.set("k", 1)  # InvalidValueError today, on every write from now on
        assert await agent.delete("k") is True


async def test_a_registration_l2_refuses_for_good_does_not_keep_opening_the_breaker(
    engine: Any, prefix: str
) -> None:
    """A registration the server refuses every time (here WRONGTYPE: a string planted where
    the event's set lives; OOM under noeviction, or an ACL, do the same) is retried every
    0.5 s forever, each try a breaker failure: the breaker opens and re-opens, and a
    healthy L2 is refused to every request of the instance for as long as it runs."""
    engine.client.set(prefix + "\x1fevent:e", "planted")
    cfg = redis_config(
        engine, prefix, invalidation={"backend": "redis", "event_triggers": {"e": []}}
    )
    cfg["circuit_breaker"]["failure_threshold"] = 3
    async with CachingAgent.from_config(cfg, env={}) as agent:
        registration = agent.invalidation_manager.register_event_subscription("e", "x")
        with contextlib.suppress(CacheError):
            await registration  # its own error is fine
        await asyncio.sleep(2.0)
        assert agent.breaker.describe()["opened_total"] == 0, agent.breaker.describe()


async def test_a_pending_registration_does_not_refuse_write_back_while_l2_is_away(
    private_engine: Any, prefix: str
) -> None:
    """With L2 away, write-back takes plain writes (the point of buffering). A registration
    made meanwhile sits in the queue, and _write's land() raises TierUnavailableError outside
    the try that lets write-back through: every write-back write is refused until L2 is back."""
    async with CachingAgent.from_config(redis_config(private_engine, prefix), env={}) as agent:
        private_engine.kill()
        await agent.set("before", 1, strategy="write_back")  # accepted with L2 away
        agent.invalidation_manager.register_dependency("a", "b")
        await asyncio.sleep(0.05)
        await agent.set("after", 2, strategy="write_back")  # refused today
        assert await agent.get("after") == 2
        private_engine.start()


async def test_awaiting_a_registration_before_start_is_no_verdict_on_l2(
    engine: Any, prefix: str
) -> None:
    """Registrations made before start apply at start; awaiting one before start sends it
    to the unstarted tier instead ("the Redis tier is not started"), and that counts as an
    L2 failure: failure_threshold such awaits open the breaker before the agent starts."""
    agent = CachingAgent.from_config(redis_config(engine, prefix), env={})
    registration = agent.invalidation_manager.register_dependency("dep", "src")
    with pytest.raises(RuntimeError, match="not started"):
        await registration
    assert agent.breaker.describe()["consecutive_failures"] == 0
    async with agent:
        await agent.set("dep", 1)
        await agent.delete("src")
        assert await agent.get("dep") is None


# -- context-less events ------------------------------------------------------------------


async def test_a_subscription_filled_without_context_keeps_the_caller_wildcard_limit(
    make_agent, base_config
) -> None:
    """A subscription target is checked against limits.max_pattern_wildcards with its
    placeholders as text (no wildcard); fired without context each becomes ``*``, and the
    filled glob (here 9 wildcards, the limit is 8) goes to L2 unchecked."""
    agent = await make_agent(base_config(invalidation={"event_triggers": {"e": []}}))
    target = ":".join(f"{{f{i}}}a" for i in range(9))
    try:
        agent.invalidation_manager.register_event_subscription("e", target)
    except CacheError:
        return  # refused at registration: fine
    with pytest.raises(CacheError, match="wildcards"):
        await agent.invalidate_by_event("e")


async def test_close_applies_thousands_queued_just_before_it(engine: Any, prefix: str) -> None:
    """3,000 registrations left unawaited before close reach the shared index: close gives
    the queue operation_timeout per thousand. They land a thousand to a round trip now
    (0.15 s here; 3.1 s when each had a round trip of its own, when a fresh-clone CI run
    at 1 s a thousand left 175 behind), and the generous timeout stays."""
    cfg = redis_config(engine, prefix)
    cfg["circuit_breaker"]["operation_timeout"] = 5.0
    async with CachingAgent.from_config(cfg, env={}) as agent:
        for i in range(3000):
            agent.invalidation_manager.register_event_subscription("e", f"k{i}")
    manager = agent.invalidation_manager
    assert isinstance(manager, InvalidationManager)
    assert manager.pending == 0
    assert engine.client.scard(prefix + "\x1fevent:e") == 3000


async def test_queued_registrations_land_a_thousand_to_a_round_trip(
    engine: Any, prefix: str
) -> None:
    """Registrations queued together reach the index together: 3,000 of both kinds, in 3
    calls of the index (round trips), not 3,000; every one of them is there after."""
    cfg = redis_config(engine, prefix)
    async with CachingAgent.from_config(cfg, env={}) as agent:
        manager = agent.invalidation_manager
        assert isinstance(manager, InvalidationManager)
        index = agent.index
        calls: list[int] = []
        register = index.register  # type: ignore[union-attr]

        async def counted(dependencies: Any, subscriptions: Any) -> None:
            calls.append(len(dependencies) + len(subscriptions))
            await register(dependencies, subscriptions)

        index.register = counted  # type: ignore[union-attr]
        for i in range(1500):
            manager.register_event_subscription("e", f"k{i}")
            manager.register_dependency(f"d{i}", f"s{i % 7}")
        await manager.land()
        assert calls == [1000, 1000, 1000]
        assert manager.pending == 0
    assert engine.client.scard(prefix + "\x1fevent:e") == 1500
    assert sum(engine.client.scard(prefix + f"\x1freg:s{j}") for j in range(7)) == 1500
