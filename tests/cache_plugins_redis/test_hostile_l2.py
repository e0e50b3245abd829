"""What another client can leave in the engine, and an engine that stops answering: frames
planted or cut short, names that are not UTF-8, a sweep that fails part-way, SIGSTOP.

Every frame read from L2 is checked (header, length, exactly one JSON value) before the
agent promotes or splices it; a bad one is that key's error alone. Foreign names are bytes
to the tier; each round trip of a sweep or a count is bounded by the operation timeout."""

from __future__ import annotations

import asyncio
import gc
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cache_core import CachingAgent, CorruptEntryError, TierUnavailableError
from cache_core.frames import RAW_CODEC_ID, check_json, header
from cache_core.tiers.guarded import GuardedTier
from cache_plugins_compression.gzip_codec import GzipCodec
from cache_plugins_redis.tier import RedisTier

_HEADER = header(RAW_CODEC_ID)  # the current format, never expires

BAD_FRAMES = {
    # The header of the current version cut after the codec id: no expiry, no payload.
    "truncated": b"\xca\x02\x00",
    "header_only": _HEADER,
    # A payload that, spliced after "value":, would add fields to the answer.
    "forged": _HEADER + b'1,"hit":false,"tier":"forged","x":{"y":1}',
    "garbage": _HEADER + random.Random(13).randbytes(64),
    "v1_bad_json": b"\xca\x01\x00" + b'{"v":',
    "v1_two_values": b"\xca\x01\x00" + b"1 2",
    # Compressed, its declared size right, and what it inflates to is not JSON.
    "gzip_not_json": header(GzipCodec.CODEC_ID)
    + len(b"{not json" * 300).to_bytes(4, "big")
    + GzipCodec().compress(b"{not json" * 300),
}


def agent_for(config: dict[str, Any]) -> CachingAgent:
    return CachingAgent.from_config(config, env={})


def tier_of(agent: CachingAgent) -> RedisTier:
    tier = agent.l2
    assert isinstance(tier, RedisTier)
    return tier


def guarded_of(agent: CachingAgent) -> GuardedTier:
    """The tier as the data path calls it: timed, bounded, behind the breaker."""
    assert agent.guarded_l2 is not None
    return agent.guarded_l2


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_a_bad_frame_is_refused_on_get_and_never_promoted(
    l2_config: dict[str, Any], engine: Any, prefix: str, name: str
) -> None:
    engine.client.set(prefix + "bad", BAD_FRAMES[name])
    async with agent_for(l2_config) as agent:
        with pytest.raises(CorruptEntryError):
            await agent.lookup("bad")
        assert "bad" not in agent.l1
        with pytest.raises(CorruptEntryError):
            await agent.lookup("bad")  # still refused: nothing was promoted


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_a_bad_frame_is_that_keys_error_alone_in_get_many(
    l2_config: dict[str, Any], engine: Any, prefix: str, name: str
) -> None:
    engine.client.set(prefix + "bad", BAD_FRAMES[name])
    async with agent_for(l2_config) as agent:
        await agent.set_many({"a": {"v": 1}, "b": [2]}, strategy="write_around")
        # The tier stores bytes: it returns what was planted as it is, unread.
        assert await tier_of(agent).get_many(["bad", "gone"]) == [BAD_FRAMES[name], None]
        # The guarded tier opens every frame: a bad one is reported in place, not raised.
        found = await guarded_of(agent).get_many(["a", "bad", "gone", "b", "bad"])
        assert [getattr(entry, "data", entry) for entry in found[::3]] == [b'{"v":1}', b"[2]"]
        assert isinstance(found[1], CorruptEntryError)
        assert isinstance(found[4], CorruptEntryError)
        assert found[2] is None


async def test_the_frames_we_write_all_read_back(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    values: dict[str, Any] = {
        "small": 1,
        "text": "é\u2028\x00",
        "deep": [[[[[[[[[[{"x": None}]]]]]]]]]],
        "big_int": 2**64 - 1,
        "large": {"items": [{"i": i, "name": f"item {i}"} for i in range(2000)]},
    }
    async with agent_for(l2_config) as agent:
        await agent.set_many(values, strategy="write_around")
        assert engine.client.get(prefix + "large")[2] != RAW_CODEC_ID  # the compressed path
        assert await agent.get_many(list(values)) == values


@pytest.mark.parametrize("gc_was_on", [True, False])
def test_the_json_check_of_a_large_payload_leaves_the_gc_as_it_was(gc_was_on: bool) -> None:
    large = b'{"items":[' + b",".join([b'{"i":1}'] * 20_000) + b"]}"
    was = gc.isenabled()
    try:
        if not gc_was_on:
            gc.disable()
        check_json(large)
        with pytest.raises(CorruptEntryError):
            check_json(large + b",")
        assert gc.isenabled() is gc_was_on
    finally:
        if was:
            gc.enable()


FOREIGN = b"s:\xff"
"""A name no caching agent writes (ours are UTF-8), as another client could."""


async def test_a_non_utf8_name_under_the_prefix_is_counted_and_swept(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    foreign = prefix.encode() + FOREIGN
    engine.client.set(foreign, b"x")
    async with agent_for(l2_config) as agent:
        await agent.set_many({"s:1": 1, "s:2": 2, "t:1": 3})
        tier = tier_of(agent)
        assert await tier.count() == 4
        assert sorted(await tier.delete_matching("s:*")) == ["s:1", "s:2"]
        assert engine.client.exists(foreign) == 0  # the engine matched it: unlinked
        engine.client.set(foreign, b"x")
        assert await tier.delete_matching("*") == ["t:1"]
        assert engine.client.exists(foreign) == 0
        assert await tier.count() == 0


async def test_a_non_utf8_name_amid_a_large_sweep(
    l2_config: dict[str, Any], engine: Any, prefix: str
) -> None:
    engine.client.mset({f"{prefix}k{i}": _HEADER + b"1" for i in range(1200)})
    engine.client.set(prefix.encode() + FOREIGN, b"x")
    async with agent_for(l2_config) as agent:
        removed = await tier_of(agent).delete_matching("*")
        assert sorted(removed) == sorted(f"k{i}" for i in range(1200))
        assert engine.client.keys(prefix.replace(":", "\\:") + "*") == []


async def test_a_sweep_that_fails_part_way_still_announces_what_it_removed(
    l2_config: dict[str, Any], engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch, heard: Any
) -> None:
    keys = {f"k{i}": i for i in range(1200)}
    async with agent_for(l2_config) as a, agent_for(l2_config) as b:
        for start in range(0, len(keys), 600):  # the batch limit is 1000
            await a.set_many(dict(list(keys.items())[start : start + 600]))
        await heard(b, 2)  # a's write notices, before b fills its L1
        for start in range(0, len(keys), 600):
            part = list(keys)[start : start + 600]
            assert await b.get_many(part) == {key: keys[key] for key in part}
        assert all(key in b.l1 for key in keys)
        tier = tier_of(a)
        real = tier._unlink_live
        calls = 0

        async def dies_after_the_first(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise ConnectionError("the engine went away mid-sweep")
            return await real(*args)

        monkeypatch.setattr(tier, "_unlink_live", dies_after_the_first)
        with pytest.raises((ConnectionError, TierUnavailableError)):
            await a.invalidate_pattern("k*")
        gone = [key for key in keys if engine.client.exists(prefix + key) == 0]
        assert 0 < len(gone) < len(keys)
        # b heard of the pattern: none of the removed keys is served from its L1 any more.
        deadline = time.monotonic() + 2
        while any(key in b.l1 for key in gone):
            assert time.monotonic() < deadline, "no change notice reached the other instance"
            await asyncio.sleep(0.02)


OPERATION_TIMEOUT = 0.3
SOCKET_TIMEOUT = 3.0
"""Far beyond the budget: a call waiting on the socket instead shows at once."""


@pytest.fixture
def stopped(private_engine: Any) -> Iterator[Any]:
    """The engine, thawed (SIGCONT) at the end whatever the test did to it."""
    try:
        yield private_engine
    finally:
        private_engine.process.send_signal(signal.SIGCONT)


def frozen_config(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {
            "url": engine.url,
            "key_prefix": prefix,
            "socket_timeout": SOCKET_TIMEOUT,
            "connect_timeout": 0.5,
            "retry_attempts": 1,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
        # The breaker never opens here: each call must fail on its own budget, not fast.
        "circuit_breaker": {"failure_threshold": 1000, "operation_timeout": OPERATION_TIMEOUT},
    }


@pytest.mark.parametrize("call", ["delete_matching", "count"])
async def test_a_frozen_engine_fails_sweeps_and_counts_within_the_budget(
    stopped: Any, prefix: str, call: str
) -> None:
    async with agent_for(frozen_config(stopped, prefix)) as agent:
        await agent.set_many({f"k{i}": i for i in range(10)})
        l2 = guarded_of(agent)
        # SIGSTOP: connections stay open and nothing answers, as on a stalled host.
        stopped.process.send_signal(signal.SIGSTOP)
        for _ in range(2):  # the pooled connection, then a fresh one
            start = time.perf_counter()
            with pytest.raises(TierUnavailableError):
                await (l2.delete_matching("k*") if call == "delete_matching" else l2.count())
            took = time.perf_counter() - start
            assert took < OPERATION_TIMEOUT + 1.0, f"{call} waited {took:.2f} s"
        stopped.process.send_signal(signal.SIGCONT)


async def test_a_sweep_whose_notice_fails_announces_it_once_the_engine_takes_it(
    l2_config: dict[str, Any], engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine that froze mid-sweep keeps the others subscribed (their connection stays
    open): the notice must reach them once it thaws, or they serve removed keys for good.
    Tracking off: its invalidations of the UNLINKs would drop B's copies before the notice
    (the notice is what reaches B where tracking is not in use: Cluster, older servers)."""
    untracked = {**l2_config, "redis": {**l2_config["redis"], "client_tracking": "off"}}
    async with agent_for(untracked) as a, agent_for(untracked) as b:
        await a.set_many({f"s{i}": i for i in range(20)})
        deadline = time.monotonic() + 2
        while tier_of(b).notices_received < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert await b.get_many([f"s{i}" for i in range(20)]) == {f"s{i}": i for i in range(20)}
        client = tier_of(a).client
        real = client.publish
        refusals = 3

        async def flaky(*args: Any) -> Any:
            nonlocal refusals
            if refusals:
                refusals -= 1
                raise ConnectionError("the engine froze")
            return await real(*args)

        monkeypatch.setattr(client, "publish", flaky)
        with pytest.raises((ConnectionError, TierUnavailableError)):
            await a.invalidate_pattern("s*")
        assert engine.client.exists(*(f"{prefix}s{i}" for i in range(20))) == 0
        deadline = time.monotonic() + 5
        while any(f"s{i}" in b.l1 for i in range(20)):
            assert time.monotonic() < deadline, "the notice never reached the other instance"
            await asyncio.sleep(0.02)
        assert refusals == 0


async def test_a_notice_that_is_not_utf8_is_ignored_not_fatal(
    l2_config: dict[str, Any], engine: Any
) -> None:
    """Anyone who may PUBLISH on the channel could send one; before, every instance lost
    its subscription over it and emptied its L1."""
    async with agent_for(l2_config) as a:
        await a.set("hot", 1)
        tier = tier_of(a)
        engine.client.publish(tier.channel, b"evil\np\n\xff")
        engine.client.publish(tier.channel, b"evil\nk\n\xfe\xff")
        await asyncio.sleep(0.2)
        assert tier.coherent
        assert a.health()["status"] == "ok"
        assert "hot" in a.l1
