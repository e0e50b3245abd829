"""No lost update: every frame carries the stamp (the version) its write was given when it
was made, and the Redis tier sets a value only where the stored frame's stamp is older, in
one script per key inside the write's pipeline. A write_back flush never overwrites a value
another instance wrote after it, nor does a write_through; an instance whose write was
refused drops its L1 copy, so its next read fetches the newer value."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cache_core import CachingAgent
from cache_core.frames import (
    HEADER_SIZE,
    MAGIC,
    MAX_AHEAD_NS,
    RAW_CODEC_ID,
    TOMBSTONE_TTL,
    HybridClock,
    header,
)
from cache_core.strategies import WriteBack
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.scripts import SCRIPT_BATCH_BYTES, SET_UNLESS_NEWER_SHA
from cache_plugins_redis.tag_versions import annotated, strip

KEYS = [f"lost:{i}" for i in range(20)]


def agent_for(config: dict[str, Any]) -> CachingAgent:
    return CachingAgent.from_config(config, env={})


def write_back_of(agent: CachingAgent) -> WriteBack:
    strategy = agent.strategies["write_back"]
    assert isinstance(strategy, WriteBack)
    return strategy


def payload(engine: Any, prefix: str, key: str) -> bytes:
    """The JSON of ``key``'s stored frame (an uncompressed one), read past the agent."""
    frame: bytes = engine.client.get(prefix + key)
    if annotated(frame):  # it records tag versions: the tier's own format
        frame = strip(frame)[0]
    return frame[HEADER_SIZE:]


async def eventually(agent: CachingAgent, expected: dict[str, Any], timeout: float = 2) -> None:
    """``agent`` reads ``expected`` within ``timeout`` (change notices travel meanwhile)."""
    deadline = time.monotonic() + timeout
    while (found := await agent.get_many(list(expected))) != expected:
        assert time.monotonic() < deadline, f"read {found}"
        await asyncio.sleep(0.005)


async def after_ticks(ticks: int, work: Any) -> Any:
    for _ in range(ticks):
        await asyncio.sleep(0)
    return await work


async def test_a_flush_never_overwrites_a_newer_write_of_another_instance(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """The issue's measured case: A writes with write_back, then B with write_through (it
    returns); A's flush used to put A's older values back over B's, 20 keys of 20."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for key in KEYS:
            assert await a.set(key, "old", strategy="write_back") == "write_back"
        for key in KEYS:
            assert await b.set(key, "new", strategy="write_through") == "write_through"
        await eventually(a, dict.fromkeys(KEYS, "new"))  # B's notices flush A's writes at once
        await write_back_of(a).flush()  # whatever they did not send yet
        assert {key: payload(engine, prefix, key) for key in KEYS} == dict.fromkeys(KEYS, b'"new"')
        newest = dict.fromkeys(KEYS, "new")
        await eventually(a, newest)
        await eventually(b, newest)


async def test_a_write_through_racing_a_flush_wins_whichever_lands_first(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """B's write_through is made after A's write_back: sent in the same tick as A's flush
    (each first in turn, on their own connections), the two units reach the engine in
    either order, and B's value stays either way."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for round_ in range(6):
            for key in KEYS:
                await a.set(key, f"a{round_}", strategy="write_back")
            newer = {key: f"b{round_}" for key in KEYS}
            flush = write_back_of(a).flush()
            writes = [b.set(key, value, strategy="write_through") for key, value in newer.items()]
            # Either side held back for a few ticks, by turns: its unit is sent after the
            # other's, while the other's may still be on its way.
            if round_ % 2:
                await asyncio.gather(flush, *(after_ticks(round_, w) for w in writes))
            else:
                await asyncio.gather(*writes, after_ticks(round_, flush))
            stored = {key: payload(engine, prefix, key) for key in KEYS}
            assert stored == {key: f'"{value}"'.encode() for key, value in newer.items()}
            await eventually(a, newer)
            await eventually(b, newer)


async def test_a_write_through_older_than_the_stored_value_is_refused_and_left_out_of_l1(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """B's clock runs behind A's: B's write, stamped older than the one stored, is
    refused; B keeps no L1 copy of its value and reads A's. B's clock takes in A's stamp,
    so its next write wins."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        assert b.guarded_l2 is not None
        b.guarded_l2.clock = HybridClock(lambda: time.time_ns() - 5 * 10**9)
        await a.set("k", "a")
        assert await b.set("k", "b") == "write_through"
        assert payload(engine, prefix, "k") == b'"a"'
        assert "k" not in b.l1
        assert await b.lookup("k") == (b'"a"', "l2")
        assert b.guarded_l2.superseded == 1
        await b.set("k", "b2")
        assert payload(engine, prefix, "k") == b'"b2"'
        await eventually(a, {"k": "b2"})
        assert await b.lookup("k") == (b'"b2"', "l1")


async def test_a_flush_refused_as_older_drops_the_l1_copy(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """Another writer's newer frame arrives with no notice (a client of its own): the
    flush leaves it, and this instance's L1 no longer serves its own older value."""
    async with agent_for(l2_config) as a:
        await a.set("k", "mine", strategy="write_back")
        assert await a.lookup("k") == (b'"mine"', "l1")
        engine.client.set(prefix + "k", header(stamp=time.time_ns() + 10**9) + b'"theirs"')
        assert await write_back_of(a).flush() == 1
        assert payload(engine, prefix, "k") == b'"theirs"'
        assert "k" not in a.l1
        assert await a.get("k") == "theirs"


async def test_compressed_values_are_compared_alike(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    config = {**l2_config, "compression": {"threshold_bytes": 64}}
    old = {"items": [f"old {i}" for i in range(100)]}
    new = {"items": [f"new {i}" for i in range(100)]}
    async with agent_for(config) as a, agent_for(config) as b:
        await a.set("big", old, strategy="write_back")
        await b.set("big", new)
        await write_back_of(a).flush()
        stored = engine.client.get(prefix + "big")
        assert stored[2] != RAW_CODEC_ID  # compressed
        a.l1.clear()
        assert await a.get("big") == new
        newer = {"items": [f"newer {i}" for i in range(100)]}
        await a.set("big", newer)  # and a newer compressed value replaces it
        b.l1.clear()
        assert await b.get("big") == newer


async def test_writes_still_compare_after_the_engine_forgot_the_script(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """SCRIPT FLUSH (as a restart or a failover to a fresh replica would): the first write
    after it gets NOSCRIPT, sends the script whole, and the engine has it again."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for key in KEYS:
            await a.set(key, "old", strategy="write_back")
        engine.client.script_flush()
        await b.set_many(dict.fromkeys(KEYS, "new"))
        assert engine.client.script_exists(SET_UNLESS_NEWER_SHA) == [True]
        engine.client.script_flush()
        await eventually(a, dict.fromkeys(KEYS, "new"))  # B's notices flush A's writes at once
        await write_back_of(a).flush()  # whatever they did not send yet
        assert {key: payload(engine, prefix, key) for key in KEYS} == dict.fromkeys(KEYS, b'"new"')
        newest = dict.fromkeys(KEYS, "new")
        await eventually(a, newest)
        await eventually(b, newest)
        await b.set("after", 1)  # by its SHA again
        assert payload(engine, prefix, "after") == b"1"


async def test_what_carries_no_stamp_or_one_from_far_ahead_is_replaced(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    planted = {
        "v1": bytes((MAGIC, 1, 0)) + b'"v1"',
        "v2": bytes((MAGIC, 2, 0)) + bytes(8) + b'"v2"',
        "foreign": b"not a frame",
        "far_ahead": header(stamp=time.time_ns() + 2 * MAX_AHEAD_NS) + b'"clock gone wrong"',
    }
    for key, frame in planted.items():
        engine.client.set(prefix + key, frame)
    engine.client.rpush(prefix + "a_list", b"x")  # another type: SET replaces it too
    async with agent_for(l2_config) as a:
        keys = [*planted, "a_list"]
        await a.set_many(dict.fromkeys(keys, "ours"))
        assert {key: payload(engine, prefix, key) for key in keys} == dict.fromkeys(keys, b'"ours"')
        assert a.guarded_l2 is not None and a.guarded_l2.superseded == 0


async def test_no_lost_update_across_the_slots_of_a_cluster(
    cluster: list[Any], cluster_config: dict[str, Any]
) -> None:
    """Each key's script runs on its own node; one node forgot the script."""
    async with agent_for(cluster_config) as a, agent_for(cluster_config) as b:
        for key in KEYS:
            await a.set(key, "old", strategy="write_back")
        cluster[0].client.script_flush()
        await b.set_many(dict.fromkeys(KEYS, "new"))  # its notices flush A's writes at once
        await write_back_of(a).flush()  # what they did not send already
        held = [n.client.dbsize() for n in cluster]
        assert all(count > 0 for count in held), held
        newest = dict.fromkeys(KEYS, "new")
        await eventually(a, newest)
        a.l1.clear()
        assert await a.get_many(KEYS) == newest


async def test_a_flush_refused_as_older_leaves_the_newer_values_tags_alone(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """A's write_back write is indexed when its flush lands; one L2 refused did not land,
    so B's newer value keeps its tag, and invalidating the tag still removes it."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        await a.set("k", "old", strategy="write_back")
        await b.set("k", "new", strategy="write_through", tags=["t"])
        await eventually(a, {"k": "new"})  # B's notice flushed A's write: refused as older
        assert await write_back_of(a).flush() == 0
        assert payload(engine, prefix, "k") == b'"new"'
        assert await a.invalidate_by_tags(["t"]) == 1
        assert isinstance(a.index, RedisIndex)
        await a.index.reaped()
        assert engine.entries(prefix + "k") == 0
        await eventually(b, {"k": None})


async def test_a_large_flush_keeps_every_newer_write_across_script_calls(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """A flush of more entries than one call of the script takes (SCRIPT_BATCH) goes in
    several calls of one pipeline: each entry is judged on its own, in every call."""
    keys = [f"big:{i}" for i in range(250)]
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for key in keys:
            await a.set(key, "old", strategy="write_back")
        newer = keys[::7]  # in the first, a middle and the last call
        for key in newer:
            await b.set(key, "new", strategy="write_through")
        await write_back_of(a).flush()
        expected = {key: "new" if key in newer else "old" for key in keys}
        stored = {key: payload(engine, prefix, key) for key in keys}
        assert stored == {key: f'"{value}"'.encode() for key, value in expected.items()}
        await eventually(a, expected)


def evalsha_calls(engine: Any) -> int:
    stats = engine.client.info("commandstats").get("cmdstat_evalsha")
    return int(stats["calls"]) if stats else 0


async def test_a_flush_bounds_each_script_call_in_entries_and_bytes(
    l2_config: dict[str, Any], engine: Any
) -> None:
    """A script call holds the engine for its whole run: many small entries share one call,
    large ones are split so that no call carries much more than SCRIPT_BATCH_BYTES."""
    config = {**l2_config, "compression": {"enable": False}}
    async with agent_for(config) as agent:
        for i in range(50):
            await agent.set(f"small:{i}", i, strategy="write_back")
        before = evalsha_calls(engine)
        await write_back_of(agent).flush()
        assert evalsha_calls(engine) - before == 1
        large = "x" * (SCRIPT_BATCH_BYTES // 2 + 1)
        for i in range(4):
            await agent.set(f"large:{i}", large, strategy="write_back")
        before = evalsha_calls(engine)
        await write_back_of(agent).flush()
        assert evalsha_calls(engine) - before == 4  # two would go past the bound together
        assert await agent.get("large:3") == large


async def test_a_flush_never_brings_back_what_another_instance_deleted_after_it(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """A delete leaves its stamp (a tombstone, for TOMBSTONE_TTL): A buffers K, then B
    deletes K (it returns); A's flush used to put K back on every instance."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for key in KEYS:
            await a.set(key, "buffered", strategy="write_back")
        await b.set("live", 1)
        for key in KEYS:
            assert await b.delete(key) is False  # only in A's buffer: nothing cached to remove
        assert await b.delete("live") is True
        assert await b.delete("live") is False  # a tombstone is no entry
        await write_back_of(a).flush()
        a.l1.clear()
        assert await a.get_many(KEYS) == dict.fromkeys(KEYS)
        assert await b.get_many(KEYS) == dict.fromkeys(KEYS)
        assert await b.invalidate_pattern("lost:*") == 0  # tombstones are not entries
        assert engine.client.exists(*(prefix + key for key in KEYS)) == len(KEYS)  # they stay
        # A write made after the delete lands.
        await a.set(KEYS[0], "after")
        await eventually(b, {KEYS[0]: "after"})
        ttl = engine.client.pttl(prefix + KEYS[1])
        assert 0 < ttl <= TOMBSTONE_TTL * 1000


async def test_a_flush_never_brings_back_a_dependent_an_overwrite_removed_after_it(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    """An overwrite's cascade leaves tombstones too: A buffers a dependent of S, B
    overwrites S (its old value's dependents go), and A's later flush of the dependent,
    made before the overwrite, is refused."""
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        await b.set("s", 1)
        await a.set("d", "from s=1", strategy="write_back", dependencies=["s"])
        await b.set("s", 2)
        await write_back_of(a).flush()
        a.l1.clear()
        assert await a.get("d") is None
        assert await b.get("d") is None
