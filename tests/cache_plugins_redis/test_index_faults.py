"""The invalidation index when a request fails or the engine is stuck: a failed overwrite
leaves the index reaching the value still cached, no index key lives without an expiry
(unless what it indexes never expires), and every round trip answers within
``circuit_breaker.operation_timeout``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_core import CachingAgent, CorruptEntryError, TierUnavailableError
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.scripts import FLOOR_PX

BACKENDS = ["redis", "local"]
OPERATION_TIMEOUT = 0.3


def config_for(engine: Any, prefix: str, backend: str = "redis", **extra: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "invalidation": {"backend": backend},
        **extra,
    }


def refuse_l2_writes(monkeypatch: pytest.MonkeyPatch, agent: CachingAgent) -> None:
    """The L2 tier fails every set as a dropped connection would; the index still works."""

    async def refuse(*args: Any) -> None:
        raise ConnectionError("injected: L2 write refused")

    monkeypatch.setattr(agent.l2, "set", refuse)
    monkeypatch.setattr(agent.l2, "set_many", refuse)
    monkeypatch.setattr(agent.l2, "set_unless_newer", refuse)  # the one core writes with


def index_keys(engine: Any, prefix: str) -> list[bytes]:
    # SCAN may return a name twice (while the engine rehashes).
    return sorted(set(engine.client.scan_iter(match=prefix + "\x1f*", count=1000)))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_failed_overwrite_with_new_tags_leaves_the_old_tag_reaching_the_old_value(
    engine: Any, prefix: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix, backend), env={}) as agent:
        await agent.set("k", "old", tags=["old"], ttl=60)
        with monkeypatch.context() as patch:
            refuse_l2_writes(patch, agent)
            with pytest.raises(TierUnavailableError):
                await agent.set("k", "new", tags=["new"], ttl=60)
        assert engine.entries(prefix + "k")  # the old value is still cached...
        assert await agent.invalidate_by_tags(["old"]) == 1  # ...and its tag still reaches it
        if isinstance(agent.index, RedisIndex):
            await agent.index.reaped()  # stale at once, gone from L2 after
        assert not engine.entries(prefix + "k")
        assert await agent.get("k") is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_failed_overwrite_with_new_dependencies_leaves_the_old_ones_reaching_it(
    engine: Any, prefix: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix, backend), env={}) as agent:
        await agent.set_many({"a": 1, "b": 2}, ttl=60)
        await agent.set("child", "old", dependencies=["a"], ttl=60)
        with monkeypatch.context() as patch:
            refuse_l2_writes(patch, agent)
            with pytest.raises(TierUnavailableError):
                await agent.set("child", "new", dependencies=["b"], ttl=60)
        assert engine.entries(prefix + "child")
        assert await agent.delete("a") is True
        assert not engine.entries(prefix + "child")
        assert await agent.get("child") is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_next_write_that_lands_settles_the_index_to_its_own_tags(
    engine: Any, prefix: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix, backend), env={}) as agent:
        await agent.set("k", 1, tags=["old"], dependencies=["a"], ttl=60)
        with monkeypatch.context() as patch:
            refuse_l2_writes(patch, agent)
            with pytest.raises(TierUnavailableError):
                await agent.set("k", 2, tags=["new"], dependencies=["b"], ttl=60)
        await agent.set("k", 3, tags=["new"], dependencies=["b"], ttl=60)
        assert await agent.invalidate_by_tags(["old"]) == 0
        await agent.set("a", 0)  # no longer a source of k
        assert await agent.get("k") == 3
        assert await agent.invalidate_by_tags(["new"]) == 1


async def test_settle_drops_the_links_only_the_old_value_needed(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        index = agent.index
        assert isinstance(index, RedisIndex)
        await agent.set("k", 1, tags=["a", "b"], dependencies=["s"], ttl=60)
        entries = [("k", 60.0, ["b", "c"])]
        await index.record(entries, ["t"])
        # Until the write lands, old and new links both reach the key.
        assert await index.keys_for_tags(["a"]) == {"k"}
        assert await index.keys_for_tags(["c"]) == {"k"}
        assert await index.dependents(["s"]) == {"k"}
        assert await index.dependents(["t"]) == {"k"}
        settling = index.settle(entries, ["t"])
        assert settling is not None
        await settling
        assert await index.keys_for_tags(["a"]) == set()
        assert await index.tracked("a") == 0  # gone from the set, not only filtered out
        assert await index.keys_for_tags(["b", "c"]) == {"k"}
        assert await index.dependents(["s"]) == set()
        assert await index.dependents(["t"]) == {"k"}
        # Nothing changed since: nothing to send.
        await index.record(entries, ["t"])
        assert index.settle(entries, ["t"]) is None


async def test_every_index_key_expires_with_the_longest_lived_entry_it_indexes(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("x", 1, ttl=60)
        await agent.set("a", 1, tags=["t1", "t2"], ttl=60)
        await agent.set("a", 2, tags=["t2", "t3"], ttl=30)  # tags changed
        await agent.set("b", 1, tags=["t1"], dependencies=["x", "a"], ttl=60)
        await agent.set("b", 1, tags=["t1"], dependencies=["x"], ttl=45)  # a dependency dropped
        await agent.set_many({f"m{i}": i for i in range(40)}, tags=["many", "t1"], ttl=60)
        await agent.set("c", 3, tags=["t4"], dependencies=["x"], ttl=60)
        await agent.delete("c")
        await agent.invalidate_by_tags(["t3"])
        keys = index_keys(engine, prefix)
        assert len(keys) > 5
        ttls = {key: engine.client.pttl(key) for key in keys}
        assert {key: ms for key, ms in ttls.items() if not 0 < ms <= 60_000} == {}


async def test_only_an_index_of_what_never_expires_may_live_without_an_expiry(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        index = agent.index
        assert isinstance(index, RedisIndex)
        await index.record([("brief", 60.0, ["t"])], [])
        await index.record([("forever", None, ["t"])], [])
        tag_set = (prefix + "\x1ftag:t").encode()
        assert engine.client.pttl(tag_set) == -1  # it holds a key that never expires
        await index.forget(["forever"])
        assert 0 < engine.client.pttl(tag_set) <= 60_000  # back to its longest-lived member
        ttls = {key: engine.client.pttl(key) for key in index_keys(engine, prefix)}
        assert {key: ms for key, ms in ttls.items() if ms <= 0} == {}


@contextlib.contextmanager
def stopped(engine: Any, seconds: float) -> Iterator[None]:
    """The engine process frozen (SIGSTOP), resumed after ``seconds`` at the latest."""
    loop = asyncio.get_running_loop()
    os.kill(engine.process.pid, signal.SIGSTOP)
    resume = loop.call_later(seconds, os.kill, engine.process.pid, signal.SIGCONT)
    try:
        yield
    finally:
        resume.cancel()
        os.kill(engine.process.pid, signal.SIGCONT)


async def test_index_lookups_answer_within_the_budget_while_the_engine_is_stopped(
    private_engine: Any, prefix: str
) -> None:
    cfg = config_for(
        private_engine,
        prefix,
        circuit_breaker={"operation_timeout": OPERATION_TIMEOUT, "failure_threshold": 100},
    )
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("x", 1, tags=["t"])
        await agent.set("y", 2, dependencies=["x"])
        index = agent.index
        assert index is not None
        calls: dict[str, Any] = {
            "delete": lambda: agent.delete("x"),
            "invalidate_by_tags": lambda: agent.invalidate_by_tags(["t"]),
            "dependents": lambda: index.dependents(["x"]),
            "keys_for_tags": lambda: index.keys_for_tags(["t"]),
            "forget": lambda: index.forget(["x", "y"]),
        }
        took: dict[str, float] = {}
        with stopped(private_engine, 4.0):
            for name, call in calls.items():
                start = time.perf_counter()
                with pytest.raises((TierUnavailableError, TimeoutError)):
                    await call()
                took[name] = time.perf_counter() - start
        assert {name: s for name, s in took.items() if s > OPERATION_TIMEOUT + 0.7} == {}
        # The delete was sent: it applied on resume as one step, dependent and all, or not.
        await asyncio.sleep(0.2)
        agent.l1.clear()
        before = (await agent.get("x"), await agent.get("y"))
        assert before in [(1, 2), (None, None)]
        # The engine is back: so is the index.
        assert await agent.invalidate_by_tags(["t"]) == (2 if before == (1, 2) else 0)
        assert (await agent.get("x"), await agent.get("y")) == (None, None)


async def test_a_write_refused_while_the_engine_is_stopped_never_half_applies(
    private_engine: Any, prefix: str
) -> None:
    """A write that times out on a frozen engine waits in the socket and applies once it
    resumes: its old value's dependents must go in that same step, never be left behind."""
    cfg = config_for(
        private_engine,
        prefix,
        circuit_breaker={"operation_timeout": OPERATION_TIMEOUT, "failure_threshold": 100},
    )
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("source", 1)
        await agent.set("dependent", 2, dependencies=["source"])
        with (
            stopped(private_engine, 4.0),
            pytest.raises((TierUnavailableError, TimeoutError)),
        ):
            await agent.set("source", 3)
        await asyncio.sleep(0.2)  # whatever was sent has run by now
        agent.l1.clear()
        source, dependent = await agent.get("source"), await agent.get("dependent")
        assert (source, dependent) in [(1, 2), (3, None)]


async def test_a_write_with_tags_and_dependencies_is_one_round_trip(
    engine: Any, prefix: str, count_rounds: Any
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        rounds = count_rounds(agent.l2)
        await agent.set("k", 1, tags=["a", "b"], dependencies=["s"], ttl=60)
        await agent.set("k", 2, tags=["a", "b"], dependencies=["s"], ttl=60)
        assert len(rounds) == 2  # each one script call: value, index and notice
        rounds.clear()
        await agent.set("k", 3, tags=["b"], ttl=60)
        assert len(rounds) == 1  # the old links dropped in the same call
        assert await agent.invalidate_by_tags(["a"]) == 0
        assert await agent.invalidate_by_tags(["b"]) == 1


async def test_the_index_works_on_after_the_engine_lost_its_scripts(
    private_engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(private_engine, prefix), env={}) as agent:
        await agent.set("k", 1, tags=["a"], ttl=60)
        private_engine.client.script_flush()  # as a restart or a failover would
        await agent.set("k", 2, tags=["b"], ttl=60)
        private_engine.client.script_flush()
        assert await agent.invalidate_by_tags(["a"]) == 0
        assert await agent.invalidate_by_tags(["b"]) == 1
        assert isinstance(agent.index, RedisIndex)
        await agent.index.reaped()
        # The versions of the tags invalidated hold their floor for a while, then expire.
        versions = [(prefix + f"\x1ftv:{tag}").encode() for tag in "ab"]
        assert index_keys(private_engine, prefix) == versions
        assert all(0 < private_engine.client.pttl(v) <= FLOOR_PX for v in versions)


async def test_a_foreign_key_of_another_type_in_the_index_is_no_verdict_on_l2(
    engine: Any, prefix: str
) -> None:
    # Another client's string where a tag's sorted set belongs: WRONGTYPE on every write of
    # that tag. The server answered: the write is refused (502), the breaker stays closed.
    engine.client.set(prefix + "\x1ftag:planted", "not a sorted set")
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        for _ in range(agent.config.circuit_breaker.failure_threshold + 1):
            with pytest.raises(CorruptEntryError, match="WRONGTYPE"):
                await agent.set("k", 1, tags=["planted"])
        assert agent.breaker.state == "closed"
        await agent.set("other", 2, tags=["fine"])
        assert await agent.invalidate_by_tags(["fine"]) == 1
