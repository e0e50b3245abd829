"""The Redis-backed index: tags, dependencies, categories and events shared by instances."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import pytest

from cache_core import CachingAgent, UnknownNameError
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.scripts import FLOOR_PX
from cache_server import create_app
from cache_server.keys import AGENT

PINGER = """
import select, sys, time, redis
client = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=5)
client.ping()
print("ready", flush=True)
seen = []
while not select.select([sys.stdin], [], [], 0.002)[0]:
    start = time.perf_counter()
    client.ping()
    seen.append(time.perf_counter() - start)
print(" ".join(f"{x:.6f}" for x in seen))
"""


def config_for(engine: Any, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "invalidation": {
            "event_triggers": {
                "user_profile_update": ["user:{user_id}:*", "tag:profiles"],
                "content_modification": ["content:{content_id}"],
            },
            "dependency_rules": {"user_profile": ["personalized_content"]},
            "categories": {
                "user_profile": "user:{user_id}:profile",
                "personalized_content": "user:{user_id}:learning_path*",
            },
        },
        **extra,
    }


def held(engine: Any, prefix: str, key: str) -> bool:
    return bool(engine.entries(prefix + key))


async def eventually(check: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.002)


async def test_auto_backend_is_the_shared_index(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        assert isinstance(agent.index, RedisIndex)


async def test_over_http_invalidation_on_a_is_gone_on_b_in_l1_and_l2(
    aiohttp_client: Any, engine: Any, prefix: str
) -> None:
    cfg = config_for(engine, prefix)
    a = await aiohttp_client(create_app(cfg, env={}))
    b = await aiohttp_client(create_app(cfg, env={}))
    agent_b = b.server.app[AGENT]
    items = {
        "user:1:profile": {"n": 1},
        "user:1:learning_path:math": [1],
        "user:2:profile": {"n": 2},
        "user:2:learning_path:math": [2],
        "content:7": {"t": 7},
        "content:8": {"t": 8},
        "tagged:1": 1,
        "dep:child": 2,
        "dep:grandchild": 3,
        "pat:x:1": 4,
    }
    for key, value in items.items():
        body: dict[str, Any] = {"key": key, "value": value}
        if key == "tagged:1":
            body["tags"] = ["profiles"]
        if key == "dep:child":
            body["dependencies"] = ["content:8"]
        if key == "dep:grandchild":
            body["dependencies"] = ["dep:child"]
        assert (await a.post("/cache", json=body)).status == 200
    # B reads everything into its own L1, once A's notices of those writes have reached it
    # (a read they overlap is not promoted, by rule; with tracking, two messages a write).
    tier_b: Any = agent_b.l2
    await eventually(lambda: tier_b.notices_received >= len(items))
    if agent_b.health()["tiers"]["l2"]["coherence"] == "tracking+notices":
        await eventually(lambda: tier_b.invalidations_received >= len(items))
    got = await (await b.post("/cache/batch-get", json={"keys": list(items)})).json()
    assert got["hits"] == len(items)
    assert all(key in agent_b.l1 for key in items)

    async def invalidate(body: dict[str, Any]) -> int:
        resp = await a.post("/invalidate", json=body)
        assert resp.status == 200, await resp.text()
        return int((await resp.json())["invalidated_count"])

    # tags (set on A, B holds copies) + event with context + dependency cascade + pattern
    assert await invalidate({"tags": ["profiles"]}) == 1
    # user_profile_update for user 1: user:1:* and tag:profiles (already gone)
    assert await invalidate({"event": "user_profile_update", "context": {"user_id": 1}}) == 2
    # content:8 -> dep:child -> dep:grandchild
    assert await invalidate({"event": "content_modification", "context": {"content_id": 8}}) == 3
    assert await invalidate({"pattern": "pat:*"}) == 1
    gone = [
        "tagged:1",
        "user:1:profile",
        "user:1:learning_path:math",
        "content:8",
        "dep:child",
        "dep:grandchild",
        "pat:x:1",
    ]
    kept = sorted(set(items) - set(gone))
    for key in gone:
        assert not held(engine, prefix, key), key
    await eventually(lambda: not any(key in agent_b.l1 for key in gone))
    got = await (await b.post("/cache/batch-get", json={"keys": list(items)})).json()
    assert sorted(k for k, v in got["results"].items() if v is not None) == kept


async def test_category_rule_reaches_the_same_id_only(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set_many(
            {
                "user:1:profile": 1,
                "user:1:learning_path:a": 2,
                "user:1:learning_path:b": 3,
                "user:2:learning_path:a": 4,
            }
        )
        assert await agent.delete("user:1:profile") is True
        assert await agent.get_many(
            ["user:1:learning_path:a", "user:1:learning_path:b", "user:2:learning_path:a"]
        ) == {
            "user:1:learning_path:a": None,
            "user:1:learning_path:b": None,
            "user:2:learning_path:a": 4,
        }
        # Overwriting a profile invalidates the same user's paths too, not the profile itself.
        await agent.set("user:2:profile", {"v": 1})
        await agent.set("user:2:profile", {"v": 2})
        assert await agent.get("user:2:learning_path:a") is None
        assert await agent.get("user:2:profile") == {"v": 2}


async def test_tags_survive_a_restart_and_work_from_another_instance(
    engine: Any, prefix: str
) -> None:
    cfg = config_for(engine, prefix)
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("a", 1, tags=["t1", "t2"])
        await agent.set("b", 2, tags=["t2"])
        await agent.set("c", 3)
    async with CachingAgent.from_config(cfg, env={}) as agent:
        assert await agent.invalidate_by_tags(["t1"]) == 1
        assert await agent.invalidate_by_tags(["t2", "nope"]) == 1
        assert await agent.get_many(["a", "b", "c"]) == {"a": None, "b": None, "c": 3}


async def test_index_entries_leave_on_overwrite_delete_and_expiry(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        index = agent.index
        assert isinstance(index, RedisIndex)
        await agent.set("k1", 1, tags=["t"])
        await agent.set("k2", 2, tags=["t"])
        await agent.set("k3", 3, tags=["t"], ttl=0.05)
        assert await index.tracked("t") == 3
        await agent.set("k1", 10)  # overwritten without the tag
        await agent.delete("k2")
        assert await index.tracked("t") == 1
        await asyncio.sleep(0.1)  # k3 expired
        await agent.set("k4", 4, tags=["t"])  # a write trims expired members
        assert await index.tracked("t") == 1
        assert await agent.invalidate_by_tags(["t"]) == 1
        assert await agent.get("k1") == 10
        await index.reaped()
        assert await index.tracked("t") == 0
        # No index key outlives what it indexes; the tag's version holds the invalidation's
        # floor for as long as a delete's tombstone, then goes too.
        version = (prefix + "\x1ftv:t").encode()
        leftovers = [k for k in engine.client.scan_iter(match=prefix + "\x1f*")]
        assert leftovers == [version]
        assert 0 < engine.client.pttl(version) <= FLOOR_PX


async def test_dependencies_are_transitive_cycle_safe_and_shared(engine: Any, prefix: str) -> None:
    cfg = config_for(engine, prefix)
    async with (
        CachingAgent.from_config(cfg, env={}) as a,
        CachingAgent.from_config(cfg, env={}) as b,
    ):
        await a.set("x", 1)
        await a.set("y", 2, dependencies=["x"])
        await a.set("z", 3, dependencies=["y"])
        await a.set("w", 4)
        await a.invalidation_manager.register_dependency("x", "z")  # a cycle: x, y, z
        await b.invalidation_manager.register_dependency("w", "y")  # from the other instance
        assert await b.delete("x") is True
        # A drops its copies when B's notices reach it (within the documented 50 ms).
        await eventually(lambda: not any(key in a.l1 for key in "xyzw"))
        assert await a.get_many(["x", "y", "z", "w"]) == dict.fromkeys("xyzw")


async def test_runtime_subscriptions_live_in_redis(engine: Any, prefix: str) -> None:
    cfg = config_for(engine, prefix)
    async with CachingAgent.from_config(cfg, env={}) as a:
        await a.invalidation_manager.register_event_subscription("mastery_update", "m:*")
        await a.invalidation_manager.register_event_subscription("mastery_update", "tag:mt")
        await a.set_many({"m:1": 1, "m:2": 2})
        await a.set("other", 3, tags=["mt"])
    async with CachingAgent.from_config(cfg, env={}) as b:
        assert await b.invalidate_by_event("mastery_update") == 3
        with pytest.raises(UnknownNameError, match="mastery_update"):
            await b.invalidate_by_event("nope")


async def test_bad_event_request_changes_nothing(engine: Any, prefix: str) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("user:1:profile", 1, tags=["profiles"])
        with pytest.raises(UnknownNameError, match="nope"):
            await agent.invalidate(tags=["profiles"], event="nope")
        assert await agent.get("user:1:profile") == 1


async def test_cluster_index_spans_slots(cluster: list[Any], prefix: str) -> None:
    cfg = {
        "redis": {
            "cluster_mode": True,
            "nodes": [{"host": "127.0.0.1", "port": n.port} for n in cluster],
            "key_prefix": prefix,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
    }
    async with CachingAgent.from_config(cfg, env={}) as agent:
        assert isinstance(agent.index, RedisIndex)
        await agent.set_many({f"k{i}": i for i in range(30)}, tags=["many"])
        await agent.set("child", 1, dependencies=["k3"])
        assert await agent.invalidate_by_tags(["many"]) == 31
        assert await agent.get("child") is None


async def test_pattern_over_100k_keys_never_blocks_redis(engine: Any, prefix: str) -> None:
    total = 100_000
    pipe = engine.client.pipeline(transaction=False)
    frame = b"\xca\x01\x00" + b'{"v":1}'
    for i in range(total):
        pipe.set(f"{prefix}bulk:{i}", frame)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    # Another client in its own process (our own event loop holds this one's GIL), PINGing
    # every 2 ms until told to stop, then printing its latencies.
    pinger = subprocess.Popen(  # noqa: ASYNC220 - starting it blocks for microseconds
        [sys.executable, "-c", PINGER, str(engine.port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert pinger.stdout is not None
        assert pinger.stdout.readline().strip() == "ready"
        async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
            removed = await agent.invalidate_pattern("bulk:*")
    finally:
        out, _ = pinger.communicate("stop\n", timeout=10)
    latencies = [float(x) for x in out.split()]
    assert removed == total
    assert len(latencies) > 20  # the pinger ran throughout
    assert max(latencies) < 0.05, f"slowest PING {max(latencies) * 1000:.1f} ms"


async def test_a_registered_dependency_outlives_writes_of_the_dependent(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.invalidation_manager.register_dependency("content:rec:1", "user:1:settings")
        await agent.set("content:rec:1", [1, 2])  # written later, declaring no dependencies
        await agent.set("user:1:settings", {"lang": "en"})  # overwriting the source...
        assert await agent.get("content:rec:1") is None  # ...invalidated the dependent
        await agent.set("content:rec:1", [3])
        assert await agent.delete("user:1:settings") is True
        assert await agent.get("content:rec:1") is None


async def test_a_write_spared_by_a_cycle_keeps_its_own_dependency(engine: Any, prefix: str) -> None:
    # b depends on a, a depends on b: writing a removes b (a dependent) and spares a. The
    # edge "a depends on b" belongs to a's write, so removing b must not drop it.
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("b", 1, dependencies=["a"])
        await agent.set("a", 2, dependencies=["b"])
        assert await agent.get("b") is None
        await agent.set("b", 3)
        assert await agent.delete("b") is True
        assert await agent.get("a") is None


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_registrations_without_await_reach_the_shared_index(engine: Any, prefix: str) -> None:
    cfg = config_for(engine, prefix)
    async with (
        CachingAgent.from_config(cfg, env={}) as a,
        CachingAgent.from_config(cfg, env={}) as b,
    ):
        await a.set_many({"content:rec:123": 1, "user:123:profile": 2, "sub:1": 3})
        # As the description writes them: no await.
        a.invalidation_manager.register_dependency("content:rec:123", "user:123:profile")
        subscription = a.invalidation_manager.register_event_subscription(
            "content_modification", "sub:*"
        )
        assert await a.invalidate_pattern("*user:123:profile*") == 2
        assert await b.get("content:rec:123") is None
        await subscription  # the shared index holds it: the other instance sees it
        assert await b.invalidate_by_event("content_modification", {"content_id": 9}) == 1
        assert await a.get("sub:1") is None


async def test_get_stats_answers_without_await_from_the_last_count(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        stats = agent.get_stats()  # counted at start: an empty prefix
        assert stats["l2_size_keys"] == 0
        assert stats["l2_size_keys_age_seconds"] >= 0
        await agent.set_many({"a": 1, "b": 2})
        assert agent.get_stats()["l2_size_keys"] == 0  # not counted since
        assert (await agent.fetch_stats())["l2_size_keys"] == 2
        assert agent.get_stats()["l2_size_keys"] == 2


async def test_a_process_local_index_on_a_shared_l2_is_said_at_start(
    engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    def warnings_at_start() -> list[Any]:
        return [r for r in caplog.records if r.getMessage() == "invalidation_index_not_shared"]

    with caplog.at_level("WARNING", logger="cache_core.agent"):
        cfg = config_for(engine, prefix, invalidation={"backend": "local"})
        async with CachingAgent.from_config(cfg, env={}):
            (warning,) = warnings_at_start()
            assert warning.index == "local"
        caplog.clear()
        async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
            assert agent.index is not None and agent.index.shared
            assert warnings_at_start() == []
