"""Tag versions (cache_plugins_redis.tag_versions): invalidating a tag is one bump of its
version, whatever the tag holds and whatever the engine lost of the index; what carried
the tag, and what depended on that when written, reads as a miss on every instance at
once, and leaves L2 in the background."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cache_core import CachingAgent
from cache_plugins_redis.index import RedisIndex
from cache_plugins_redis.scripts import FLOOR_PX
from cache_plugins_redis.tag_versions import MAX_HELD, TagVersions, annotated, strip


def config_for(engine: Any, prefix: str) -> dict[str, Any]:
    """No categories and no registrations: nothing reaches further than frames record."""
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4, "ttl": 60}, "l2": {"type": "redis"}},
    }


def drop_the_index(engine: Any, prefix: str) -> int:
    """Delete every index key but the tag versions, as an eviction could; how many went."""
    names = [
        name
        for name in set(engine.client.scan_iter(match=prefix + "\x1f*", count=1000))
        if not name.startswith((prefix + "\x1ftv:").encode())
    ]
    return int(engine.client.delete(*names)) if names else 0


def redis_index(agent: CachingAgent) -> RedisIndex:
    assert isinstance(agent.index, RedisIndex)
    return agent.index


async def test_a_tag_reaches_what_it_carried_though_the_index_is_gone(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        keys = [f"k{i}" for i in range(50)]
        await agent.set_many({key: key for key in keys}, tags=["t"])
        await agent.set("other", 1, tags=["u"])
        await agent.set("source", 1, tags=["t"])
        await agent.set("dependent", 2, dependencies=["source"])
        await agent.set("second", 3, dependencies=["dependent"])
        assert drop_the_index(engine, prefix) > 0
        agent.l1.clear()
        await agent.invalidate_by_tags(["t"])
        assert await agent.get_many([*keys, "source", "dependent", "second"]) == dict.fromkeys(
            [*keys, "source", "dependent", "second"]
        )
        assert await agent.get("other") == 1  # another tag's entry stays


async def test_every_instance_drops_its_copies_at_once(engine: Any, prefix: str) -> None:
    config = config_for(engine, prefix)
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("k", 1, tags=["t"])
        await a.set("d", 2, dependencies=["k"])
        assert await b.get_many(["k", "d"]) == {"k": 1, "d": 2}  # now in b's L1
        await a.invalidate_by_tags(["t"])
        deadline = time.monotonic() + 2
        while await b.get_many(["k", "d"]) != {"k": None, "d": None}:
            assert time.monotonic() < deadline, "b still serves what the tag took"
            await asyncio.sleep(0.005)
        assert await a.get_many(["k", "d"]) == {"k": None, "d": None}


async def test_invalidating_a_tag_is_one_round_trip_whatever_it_holds(
    engine: Any, prefix: str, count_rounds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        for start in (0, 1000):
            await agent.set_many({f"k{i}": i for i in range(start, start + 1000)}, tags=["big"])
        index = redis_index(agent)
        later: list[list[str]] = []
        monkeypatch.setattr(index, "reap_later", lambda tags: later.append(list(tags)))
        rounds = count_rounds(agent.l2)
        assert await agent.invalidate_by_tags(["big"]) == 2000  # counted, not listed
        assert len(rounds) == 1
        assert later == [["big"]]


async def test_stale_entries_leave_l2_after_and_what_was_written_since_stays(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set_many({f"k{i}": i for i in range(1000)}, tags=["t"])
        await agent.set_many({f"k{i}": i for i in range(1000, 1200)}, tags=["t"])
        await agent.invalidate_by_tags(["t"])
        await agent.set("k7", "again", tags=["t"])  # before the reaping ran
        await agent.set("fresh", 1, tags=["t"])
        await redis_index(agent).reaped()
        assert engine.entries(*(prefix + f"k{i}" for i in range(1200) if i != 7)) == 0
        assert await agent.get_many(["k7", "fresh"]) == {"k7": "again", "fresh": 1}
        assert await agent.invalidate_by_tags(["t"]) == 2
        await redis_index(agent).reaped()
        # Nothing is left of the tag but its version, which holds the floor for a while.
        assert list(engine.client.scan_iter(match=prefix + "\x1f*t")) == [
            (prefix + "\x1ftv:t").encode()
        ]
        assert 0 < engine.client.pttl(prefix + "\x1ftv:t") <= FLOOR_PX


async def test_an_instance_that_missed_the_notice_does_not_serve_what_the_tag_took(
    engine: Any, prefix: str
) -> None:
    config = config_for(engine, prefix)
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("k", 1, tags=["t"])
        assert await b.get("k") == 1
        versions: TagVersions = b.l2.tag_versions  # type: ignore[union-attr]
        learned = dict(versions.known)
        await a.invalidate_by_tags(["t"])
        await a.set("j", 2, tags=["t"])  # the tag's new version is in j's frame
        await asyncio.sleep(0.05)
        versions.known.clear()
        versions.known.update(learned)  # as if b never heard the bump
        b.l1.clear()
        assert await b.get_many(["k", "j"]) == {"k": None, "j": 2}


def test_a_frame_records_its_tags_versions_and_strips_to_core_s_frame() -> None:
    core = b"\xca\x03" + bytes(17) + b"payload"
    notes = b"".join(len(t).to_bytes(2, "big") + t + b"0" * 16 for t in (b"a", b"bc"))
    frame = b"\xca\x04" + bytes(17) + len(notes).to_bytes(4, "big") + notes + b"payload"
    assert annotated(frame) and not annotated(core)
    assert strip(frame) == (core, [("a", b"0" * 16), ("bc", b"0" * 16)])
    cut = frame[:25]  # a length running past the frame: no tags, and core refuses the rest
    assert strip(cut)[1] == []


def test_keys_past_the_bound_are_handed_back_to_leave_l1() -> None:
    versions = TagVersions()
    assert versions.hold("first", ["t"]) == []
    for i in range(MAX_HELD - 1):
        versions.hold(f"k{i}", ["t"])
    assert versions.hold("last", ["t"]) == ["first"]
    assert "first" not in versions.bumped([("t", b"1" * 16)])


async def test_a_write_back_write_made_before_the_invalidation_does_not_land_after_it(
    engine: Any, prefix: str
) -> None:
    """Found by the two-agent model: A's buffered tagged write, flushed after B invalidated
    its tag, used to land recording the new version (the walk had left a tombstone)."""
    config = {**config_for(engine, prefix), "strategies": {"write_back": {"flush_interval": 60}}}
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("k", 1, tags=["blue"], strategy="write_back")
        await a.set("j", 2, tags=["red"], strategy="write_back")
        await b.invalidate_by_tags(["blue"])
        await redis_index(b).reaped()
        await a.strategies["write_back"].flush()  # type: ignore[attr-defined]
        assert engine.entries(prefix + "k") == 0
        assert await b.get_many(["k", "j"]) == {"k": None, "j": 2}
        await asyncio.sleep(0.05)
        assert await a.get("k") is None
        await b.set("k", 3, tags=["blue"])  # written after it: lands
        assert await a.get("k") == 3


async def test_with_categories_only_the_keys_of_source_categories_are_walked(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        **config_for(engine, prefix),
        "invalidation": {
            "dependency_rules": {"user_profile": ["personalized_content"]},
            "categories": {
                "user_profile": "user:{user_id}:profile",
                "personalized_content": "user:{user_id}:learning_path*",
            },
        },
    }
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set_many({f"k{i}": i for i in range(300)}, tags=["t"])
        await agent.set("user:1:profile", "p", tags=["t"])
        await agent.set("user:1:learning_path", "lp")
        await agent.set("user:2:learning_path", "other user's")
        index = redis_index(agent)
        walked: list[list[str]] = []
        keys_for_tags = index.keys_for_tags

        async def recorded(tags: Any) -> set[str]:
            walked.append(sorted(tags))
            return await keys_for_tags(tags)

        monkeypatch.setattr(index, "keys_for_tags", recorded)
        assert await agent.invalidate_by_tags(["t"]) == 301
        assert walked[0] == ["\x1esrc:t"]  # the one source key, not the 301 tagged ones
        probe = [f"k{i}" for i in range(300)] + ["user:1:profile", "user:1:learning_path"]
        assert await agent.get_many(probe) == dict.fromkeys(probe)
        assert await agent.get("user:2:learning_path") == "other user's"


async def test_the_invalidating_instance_learns_the_new_versions_at_once(
    engine: Any, prefix: str, sends: Any
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("k", 1, tags=["t"])
        await agent.invalidate_by_tags(["t"])
        await agent.set("k", 2, tags=["t"])
        await redis_index(agent).reaped()
        agent.l1.clear()
        before = sends()
        assert await agent.get("k") == 2
        assert sends() - before == 1  # the read alone: no MGET of the tag's version


async def test_an_entry_stored_without_versions_goes_with_its_tag_from_every_l1(
    engine: Any, prefix: str
) -> None:
    """An entry an earlier release stored (its tags in the index only, none in its frame)
    is not reached by the bump: the reaping removes it, and announces it."""
    config = config_for(engine, prefix)
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("old", 1, tags=["t"])
        name = prefix + "old"
        engine.client.set(name, strip(engine.client.get(name))[0], keepttl=True)
        a.l1.clear()
        assert await b.get("old") == 1  # in b's L1 now, as a copy of an unversioned entry
        assert await a.get("old") == 1
        await a.invalidate_by_tags(["t"])
        await redis_index(a).reaped()
        deadline = time.monotonic() + 2
        while await b.get("old") is not None:
            assert time.monotonic() < deadline, "b still serves what the tag took"
            await asyncio.sleep(0.005)
        assert await a.get("old") is None
        assert engine.entries(name) == 0


async def test_a_rewrite_without_the_tag_keeps_its_l1_copy_through_the_tag_s_invalidation(
    engine: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(config_for(engine, prefix), env={}) as agent:
        await agent.set("k", 1, tags=["t"])
        await agent.set("k", 2)  # carries no tag now
        await agent.invalidate_by_tags(["t"])
        assert agent.l1.get("k") is not None  # still this instance's copy: nothing took it
        assert await agent.get("k") == 2


async def test_invalidating_a_tag_keeps_a_buffered_write_that_does_not_carry_it(
    engine: Any, prefix: str
) -> None:
    """Found by the two-agent model: B read k while it carried the tag, A rewrote it
    without, B buffered a plain write of k; B's invalidation of the tag dropped that write
    (acknowledged, and carrying no tag) for what B remembered of the value it had read."""
    config = {**config_for(engine, prefix), "strategies": {"write_back": {"flush_interval": 60}}}
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("k", 1, tags=["blue"])
        assert await b.get("k") == 1
        await a.set("k", 2)
        await asyncio.sleep(0.05)  # a's notice reaches b
        assert await b.get("k") == 2
        await b.set("k", 3, strategy="write_back")
        await b.set("j", 4, tags=["blue"], strategy="write_back")
        await b.invalidate_by_tags(["blue"])
        assert await b.get_many(["k", "j"]) == {"k": 3, "j": None}
        await b.strategies["write_back"].flush()  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
        assert await a.get_many(["k", "j"]) == {"k": 3, "j": None}


async def test_a_tag_on_a_buffered_write_takes_the_older_value_l2_still_holds(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the two-agent model: k's latest write (buffered) carries the tag, the value
    L2 holds (written before) does not; invalidating the tag left that older value
    readable until the reaping reached it."""
    config = {**config_for(engine, prefix), "strategies": {"write_back": {"flush_interval": 60}}}
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("k", 1, tags=["blue"])
        await agent.set("k", 3, tags=["red"], strategy="write_back")
        monkeypatch.setattr(redis_index(agent), "reap_later", lambda tags: None)
        await agent.invalidate_by_tags(["red"])
        agent.l1.clear()
        assert await agent.get("k") is None
        assert engine.entries(prefix + "k") == 0


async def test_a_buffered_write_with_a_dependency_and_no_tag_survives_the_old_tag(
    engine: Any, prefix: str
) -> None:
    """Found by the two-agent model: B read k while it carried the tag, then buffered a
    write of k with a dependency and no tag (indexed in the request); B's invalidation of
    the tag purged that write, acknowledged and carrying no tag."""
    config = {**config_for(engine, prefix), "strategies": {"write_back": {"flush_interval": 60}}}
    async with CachingAgent.from_config(config, env={}) as b:
        await b.set("k", 1, tags=["blue"])
        b.l1.clear()
        assert await b.get("k") == 1
        await b.set("k", 3, dependencies=["src"], strategy="write_back")
        await b.invalidate_by_tags(["blue"])
        assert await b.get("k") == 3
        await b.strategies["write_back"].flush()  # type: ignore[attr-defined]
        b.l1.clear()
        assert await b.get("k") == 3
