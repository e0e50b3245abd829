"""How L2 uses memory: the embedded engine runs with ``cache_tiers.l2.max_memory_mb`` and
the engine policy ``eviction_policy`` maps to, evicts entries (never the invalidation
indexes) once full, and says clearly when it holds nothing it may evict; a server of
your own is checked at start (never changed) and an unsuited one is reported once."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cache_core import CachingAgent, ConfigError, TierUnavailableError
from cache_core.config import MIB
from cache_core.frames import is_tombstone
from cache_plugins_redis import index as redis_index
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.settings import RedisSettings

MEMORY_LOGGER = "cache_plugins_redis"


def embedded(tmp_path: Path, **l2: Any) -> dict[str, Any]:
    return {
        "redis": {"url": "embedded", "data_dir": str(tmp_path / "engine")},
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis", **l2}},
        "compression": {"enable": False},  # the values' size is what fills the engine
    }


def external(server: Any, prefix: str, **l2: Any) -> dict[str, Any]:
    return {
        "redis": {"url": server.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis", **l2}},
    }


def engine_config(agent: CachingAgent, name: str) -> str:
    """What the embedded engine itself says ``name`` is (CONFIG GET over its socket)."""
    import redis

    engine = agent.l2.engine  # type: ignore[union-attr]
    assert engine is not None
    with redis.Redis(unix_socket_path=str(engine.socket_path), socket_timeout=5) as client:
        return str(client.config_get(name)[name])


def memory_records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == event]


async def fill_without_ttl(client: Any, most: int = 10_000) -> bool:
    """Write new 1 kB keys without a TTL until the engine refuses one (True) or ``most``
    landed. Again after a write got in: the engine's own buffers shrink now and then, which
    leaves room for a few more."""
    from redis.exceptions import OutOfMemoryError

    try:
        for _ in range(most):
            await client.set(f"junk:{uuid.uuid4().hex}", b"j" * 1000)
    except OutOfMemoryError:
        return True
    return False


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_engine(engine: Any, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``start_engine(*args)``: an engine of this test's own, started with ``args``."""
    started: list[Any] = []

    def start(*extra: str) -> Any:
        server = type(engine)(tmp_path / f"engine{len(started)}", _port(), *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- the embedded engine ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("lru", "volatile-lru"),
        ("lfu", "volatile-lfu"),
        ("random", "volatile-random"),
        ("ttl", "volatile-ttl"),
        ("noeviction", "noeviction"),
    ],
)
async def test_the_embedded_engine_runs_with_the_configured_limit_and_policy(
    tmp_path: Path, policy: str, expected: str
) -> None:
    config = embedded(tmp_path, eviction_policy=policy, max_memory_mb=48)
    async with CachingAgent.from_config(config, env={}) as agent:
        assert engine_config(agent, "maxmemory") == str(48 * MIB)
        assert engine_config(agent, "maxmemory-policy") == expected
        assert engine_config(agent, "maxmemory-samples") == "10"
        assert "warnings" not in agent.health()  # our own engine: nothing to tell the operator


async def test_the_embedded_engine_is_bounded_by_default(tmp_path: Path) -> None:
    async with CachingAgent.from_config(embedded(tmp_path), env={}) as agent:
        assert engine_config(agent, "maxmemory") == str(512 * MIB)
        assert engine_config(agent, "maxmemory-policy") == "volatile-lru"


def test_serve_workers_start_the_engine_with_the_same_limit_and_policy(tmp_path: Path) -> None:
    from cache_plugins_redis.shared_engine import WorkersEngine
    from cache_server.workers import shared_engine

    config = embedded(tmp_path, eviction_policy="lfu", max_memory_mb=64)
    agent = CachingAgent.from_config(config, env={})
    engine = shared_engine(agent)  # what `serve --workers N` starts once, for all
    assert isinstance(engine, WorkersEngine)
    args = engine.engine.memory_args
    assert args[args.index("--maxmemory") + 1] == str(64 * MIB)
    assert args[args.index("--maxmemory-policy") + 1] == "volatile-lfu"


async def test_a_full_embedded_engine_evicts_entries_keeps_writes_working_and_every_index_key(
    tmp_path: Path, deadline: Any
) -> None:
    config = embedded(tmp_path, max_memory_mb=4, ttl=3600)
    written = 1500  # 6 MB of values into 4 MB, about 1 MB of it the engine's own
    with deadline(60):
        async with CachingAgent.from_config(config, env={}) as agent:
            assert isinstance(agent.index, RedisIndex)
            for i in range(written):
                await agent.set(f"k{i}", "x" * 4000, tags=["all", f"g{i % 10}"])
            client = agent.l2.client  # type: ignore[union-attr]
            stats = await client.info("stats")
            assert stats["evicted_keys"] > 0
            prefix = agent.config.section(RedisSettings).key_prefix
            survivors = {f"k{i}" for i in range(written) if await client.exists(prefix + f"k{i}")}
            assert 0 < len(survivors) < written
            # Every index key is there, none of them evictable: no TTL on any.
            mark = prefix + "\x1f"
            for i in range(written):
                assert await client.pttl(f"{mark}links:k{i}") == -1, i
            for tag in ["all", *(f"g{n}" for n in range(10))]:
                assert await client.pttl(f"{mark}tag:{tag}") == -1, tag
            assert await client.pttl(f"{mark}indexed") == -1
            # Tags still reach every entry that survived...
            assert survivors <= await agent.index.keys_for_tags(["all"])
            g3 = {k for k in survivors if int(k[1:]) % 10 == 3}
            assert g3 <= await agent.index.keys_for_tags(["g3"])
            # (A command may evict more meanwhile: counting what goes proves nothing.)
            assert await agent.invalidate_by_tags(["g3"]) > 0
            await agent.index.reaped()  # stale at once; the entries leave L2 after
            left = [await client.get(prefix + k) for k in g3]  # a tombstone is no entry
            assert not [frame for frame in left if frame is not None and not is_tombstone(frame)]
            assert all([await agent.get(f"k{i}") is None for i in range(3, written, 10)])
            # ...and writes still land once full.
            await agent.set("late", "y" * 4000, tags=["all"])
            agent.l1.clear()
            assert await agent.get("late") == "y" * 4000


@pytest.mark.parametrize("policy", ["lru", "noeviction"])
async def test_an_engine_with_nothing_it_may_evict_refuses_writes_as_full_and_keeps_serving(
    tmp_path: Path, policy: str, deadline: Any
) -> None:
    config = embedded(tmp_path, max_memory_mb=4, eviction_policy=policy)
    with deadline(60):
        async with CachingAgent.from_config(config, env={}) as agent:
            await agent.set("before", 1, tags=["t"])
            # Keys without a TTL (another client's) fill it: no policy may evict them.
            refused: list[TierUnavailableError] = []
            wanted = agent.config.circuit_breaker.failure_threshold + 2  # would open it
            for _ in range(50):  # bounded; nearly every try is refused
                assert await fill_without_ttl(agent.l2.client)  # type: ignore[union-attr]
                try:
                    await agent.set("refused", "z" * 1000)
                except TierUnavailableError as exc:
                    refused.append(exc)
                if len(refused) == wanted:
                    break
            assert len(refused) == wanted
            for error in refused:
                assert str(error).startswith("L2 is full"), error
                assert "max_memory_mb" in str(error)
            assert agent.breaker.state == "closed"  # the engine answers: it is only full
            assert (agent.health()["status"], agent.health()["reasons"]) == ("ok", [])
            assert await agent.get("absent") is None  # reads still go to L2
            # What frees memory still works: deletes, invalidations and the index with them.
            assert await agent.invalidate_by_tags(["t"]) == 1  # from L1 too, if L2 evicted it
            await agent.invalidate_pattern("junk*")
            await agent.delete("before")
            assert isinstance(agent.index, RedisIndex)
            assert await agent.index.sweep(until_ms=int(time.time() * 1000)) == 0


async def test_a_write_without_a_ttl_stays_evictable_while_an_eviction_policy_is_on(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(external(engine, prefix, ttl=None), env={}) as agent:
        await agent.set("k", 1)
        left = engine.client.pttl(prefix + "k")
        assert left > 0  # limits.max_ttl: a volatile-* policy may evict it
        assert math.isclose(left / 1000, agent.config.limits.max_ttl, rel_tol=1e-3)
    config = external(engine, prefix, ttl=None, eviction_policy="noeviction")
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("k", 1)
        assert engine.client.pttl(prefix + "k") == -1  # asked for: no expiry


# -- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["bogus", "allkeys-lru", "volatile-lru", "LRU", "", 5, None])
def test_an_unknown_eviction_policy_is_a_config_error_naming_the_field(
    tmp_path: Path, value: Any
) -> None:
    with pytest.raises(ConfigError, match=r"^cache_tiers\.l2\.eviction_policy: "):
        CachingAgent.from_config(embedded(tmp_path, eviction_policy=value), env={})


@pytest.mark.parametrize(
    "value", [0, -1, 3.9, math.nan, math.inf, "big", True, None, 4 * 1024 * 1024 + 1, 2**53 + 1]
)
def test_a_bad_max_memory_mb_is_a_config_error_naming_the_field(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^cache_tiers\.l2\.max_memory_mb: "):
        CachingAgent.from_config(embedded(tmp_path, max_memory_mb=value), env={})


# -- a server of your own --------------------------------------------------------------------


async def test_a_server_without_a_limit_or_eviction_is_reported_once_and_in_health(
    engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The session engine runs as a server does out of the box: maxmemory 0, noeviction.
    caplog.set_level(logging.INFO, logger=MEMORY_LOGGER)
    async with CachingAgent.from_config(external(engine, prefix), env={}) as agent:
        await agent.set("k", 1)
        (record,) = memory_records(caplog, "l2_memory_unsuited")
        assert record.levelno == logging.WARNING
        assert record.maxmemory == 0  # type: ignore[attr-defined]
        assert record.maxmemory_policy == "noeviction"  # type: ignore[attr-defined]
        assert "volatile-lru" in record.fix  # type: ignore[attr-defined]
        health = agent.health()
        status, reasons = health["status"], health["reasons"]
        assert (status, reasons) == ("ok", [])  # it serves; the operator should fix it
        (note,) = agent.health().get("warnings", [])
        assert "maxmemory 0" in note and "noeviction" in note
        assert engine.client.config_get("maxmemory")["maxmemory"] == "0"  # never changed
        assert engine.client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
async def test_a_server_with_a_limit_and_eviction_is_not_reported(
    start_engine: Callable[..., Any],
    prefix: str,
    policy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_engine("--maxmemory", "64mb", "--maxmemory-policy", policy)
    caplog.set_level(logging.INFO, logger=MEMORY_LOGGER)
    async with CachingAgent.from_config(external(server, prefix), env={}) as agent:
        await agent.set("k", 1, tags=["t"])
        assert memory_records(caplog, "l2_memory_unsuited") == []
        assert memory_records(caplog, "l2_memory_unchecked") == []
        assert agent.health().get("warnings", []) == []
        # Under a volatile policy no index key carries a TTL (none may be evicted).
        index_ttls = [server.client.pttl(k) for k in server.client.scan_iter(prefix + "\x1f*")]
        assert index_ttls
        if policy.startswith("volatile-"):
            assert set(index_ttls) == {-1}


async def test_noeviction_is_reported_unless_the_config_asks_for_it(
    start_engine: Callable[..., Any], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_engine("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
    caplog.set_level(logging.INFO, logger=MEMORY_LOGGER)
    async with CachingAgent.from_config(external(server, prefix), env={}) as agent:
        (note,) = agent.health().get("warnings", [])
        assert "noeviction" in note and "maxmemory 0" not in note
    assert len(memory_records(caplog, "l2_memory_unsuited")) == 1
    caplog.clear()
    config = external(server, prefix, eviction_policy="noeviction")
    async with CachingAgent.from_config(config, env={}) as agent:
        assert agent.health().get("warnings", []) == []
    assert memory_records(caplog, "l2_memory_unsuited") == []


async def test_a_server_that_refuses_config_is_logged_as_unchecked_and_serves(
    start_engine: Callable[..., Any], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_engine("--rename-command", "CONFIG", "")  # as managed servers do
    caplog.set_level(logging.INFO, logger=MEMORY_LOGGER)
    async with CachingAgent.from_config(external(server, prefix), env={}) as agent:
        (record,) = memory_records(caplog, "l2_memory_unchecked")
        assert "CONFIG" in record.error  # type: ignore[attr-defined]
        assert memory_records(caplog, "l2_memory_unsuited") == []
        assert agent.health().get("warnings", []) == []
        await agent.set("k", {"v": 1}, tags=["t"])
        agent.l1.clear()
        assert await agent.get("k") == {"v": 1}
        assert (agent.health()["status"], agent.health()["reasons"]) == ("ok", [])
        # Its policy is unknown: the indexes are kept safe from a volatile one.
        ttls = {server.client.pttl(k) for k in server.client.scan_iter(prefix + "\x1f*")}
        assert ttls == {-1}


# -- the index of expired entries, when index keys carry no TTL -------------------------------


async def test_the_sweep_removes_the_index_of_expired_entries_only(
    start_engine: Callable[..., Any], prefix: str
) -> None:
    server = start_engine("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
    async with CachingAgent.from_config(external(server, prefix), env={}) as agent:
        index = agent.index
        assert isinstance(index, RedisIndex)
        await agent.set("live", 1, tags=["t"], ttl=60)
        await agent.set("source", 0, ttl=60)
        for i in range(30):
            await agent.set(f"brief{i}", i, tags=["t", f"u{i}"], dependencies=["source"], ttl=0.1)
        await agent.set("back", 1, tags=["t"], ttl=0.1)
        await asyncio.sleep(0.2)
        await agent.set("back", 2, tags=["t"], ttl=60)  # expired, then written again
        await index.sweep(until_ms=int(time.time() * 1000))
        mark = prefix + "\x1f"
        # SCAN may return a name twice (while the engine rehashes): a set of names.
        left = sorted({k.decode() for k in server.client.scan_iter(mark + "*")})
        # What only expired entries needed is gone: their links, their tags' and their
        # source's sets, and the source's place among sources.
        assert left == sorted(
            mark + n for n in ("indexed", "links:back", "links:live", "tag:t", "tv:t")
        )
        assert server.client.zcard(mark + "indexed") == 2
        assert await index.keys_for_tags(["t"]) == {"live", "back"}
        assert await agent.invalidate_by_tags(["t"]) == 2


async def test_the_sweep_runs_by_itself_while_the_agent_runs(
    start_engine: Callable[..., Any], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_index, "SWEEP_INTERVAL", 0.05)
    monkeypatch.setattr(redis_index, "SWEEP_GRACE_MS", 0)
    server = start_engine("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
    async with CachingAgent.from_config(external(server, prefix), env={}) as agent:
        for i in range(10):
            await agent.set(f"brief{i}", i, tags=["t"], ttl=0.1)
        mark = prefix + "\x1f"
        deadline = time.monotonic() + 5
        while list(server.client.scan_iter(mark + "*")):
            assert time.monotonic() < deadline, list(server.client.scan_iter(mark + "*"))
            await asyncio.sleep(0.02)


async def test_invalidating_tags_stays_complete_when_the_engine_evicts_the_index(
    start_engine: Callable[..., Any], prefix: str
) -> None:
    """The issue's case: under allkeys-lru the engine evicts index keys as readily as
    entries; invalidating every tag used to remove 1,371 of 3,264 tagged keys, leaving the
    rest in L2 and both L1s. Tag versions make the invalidation one bump per tag: every
    entry that recorded the old version is a miss, wherever it is."""
    server = start_engine("--maxmemory", "8mb", "--maxmemory-policy", "allkeys-lru")
    config = external(server, prefix, ttl=3600)
    config["compression"] = {"enable": False}  # the values' size is what fills the engine
    config["cache_tiers"]["l1"]["max_size_mb"] = 64  # b keeps every copy it read
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        written = 3264
        tags = [f"g{n}" for n in range(60)]
        for i in range(written):
            await a.set(f"k{i}", "x" * 4000, tags=[tags[i % 60]])
        stats = await a.l2.client.info("stats")  # type: ignore[union-attr]
        assert stats["evicted_keys"] > 0

        async def held(agent: CachingAgent) -> set[str]:
            found: set[str] = set()
            for start in range(0, written, 1000):
                chunk = [f"k{i}" for i in range(start, min(start + 1000, written))]
                found |= {k for k, v in (await agent.get_many(chunk)).items() if v is not None}
            return found

        assert await held(b)  # what survived eviction is in b's L1 too
        await a.invalidate_by_tags(tags)
        await asyncio.sleep(0.2)  # the bump's notice reaches b
        assert await held(a) == set()
        assert await held(b) == set()
        await a.set("k0", "after", tags=["g0"])  # a tag invalidated is usable again
        assert await b.get("k0") == "after"
