"""One contract, five stores: the L1 tier (LRU, W-TinyLFU), the L2 tier (as stored and as
the data path calls it), the tiered agent; the last three on the Redis tier and on a
third-party one (tests/third_party/sqlite_tier.py). Whatever stores values must agree on
what a read returns after writes, overwrites, deletes, pattern invalidations and expiry;
each store is driven through a small adapter in JSON values."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import pytest

from cache_core import CachingAgent
from cache_core.tiers.memory import MemoryTier
from cache_core.tiers.wtinylfu import WTinyLfuTier


class Store(Protocol):
    async def put(self, key: str, value: Any, ttl: float | None = None) -> None: ...
    async def read(self, key: str) -> Any: ...
    async def read_many(self, keys: Sequence[str]) -> list[Any]: ...
    async def remove(self, key: str) -> bool: ...
    async def remove_matching(self, pattern: str) -> int: ...


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes | None) -> Any:
    return None if data is None else json.loads(data)


class L1Store:
    def __init__(self, tier: Any) -> None:
        self.tier = tier

    async def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        assert self.tier.set(key, encode(value), ttl)

    async def read(self, key: str) -> Any:
        return decode(self.tier.get(key))

    async def read_many(self, keys: Sequence[str]) -> list[Any]:
        return [decode(self.tier.get(key)) for key in keys]

    async def remove(self, key: str) -> bool:
        return bool(self.tier.delete(key))

    async def remove_matching(self, pattern: str) -> int:
        return len(self.tier.delete_matching(pattern))


class L2Store:
    """An L2 tier, as stored (``agent.l2``: opaque bytes in and out) or as the data path
    calls it (``agent.guarded_l2``: framed and checked, entries with their TTL)."""

    def __init__(self, tier: Any) -> None:
        self.tier = tier

    @staticmethod
    def _value(found: Any) -> Any:
        if isinstance(found, Exception):  # a corrupt entry, reported in its place
            raise found
        return decode(found if found is None or isinstance(found, bytes) else found.data)

    async def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.tier.set(key, encode(value), ttl)

    async def read(self, key: str) -> Any:
        return self._value(await self.tier.get(key))

    async def read_many(self, keys: Sequence[str]) -> list[Any]:
        return [self._value(found) for found in await self.tier.get_many(keys)]

    async def remove(self, key: str) -> bool:
        return bool(await self.tier.delete([key]) == [key])

    async def remove_matching(self, pattern: str) -> int:
        return len(await self.tier.delete_matching(pattern))


class AgentStore:
    def __init__(self, agent: CachingAgent) -> None:
        self.agent = agent

    async def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self.agent.set(key, value, ttl=ttl)

    async def read(self, key: str) -> Any:
        return await self.agent.get(key)

    async def read_many(self, keys: Sequence[str]) -> list[Any]:
        found = await self.agent.get_many(keys)
        return [found[key] for key in keys]

    async def remove(self, key: str) -> bool:
        return await self.agent.delete(key)

    async def remove_matching(self, pattern: str) -> int:
        return await self.agent.invalidate_pattern(pattern)


@pytest.fixture(
    params=[
        "l1",
        "l1-wtinylfu",
        "l2",
        "l2-guarded",
        "tiered",
        "l2-sqlite",
        "l2-sqlite-guarded",
        "tiered-sqlite",
    ]
)
async def store(request: pytest.FixtureRequest, make_l2: Any) -> AsyncIterator[Store]:
    """Stores by kind; the L2 ones on the shipped Redis tier, or (``-sqlite``) on the
    third-party SQLite tier of tests/third_party."""
    if request.param == "l1":
        yield L1Store(MemoryTier(MemoryTier.Options(max_size_mb=8, ttl=None)))
        return
    if request.param == "l1-wtinylfu":
        yield L1Store(WTinyLfuTier(WTinyLfuTier.Options(max_size_mb=8, ttl=None)))
        return
    backend = make_l2("sqlite" if "-sqlite" in request.param else "redis")
    kind = request.param.replace("-sqlite", "")
    config = backend.config()
    config["cache_tiers"]["l1"] = {"max_size_mb": 8, "ttl": 60}
    async with backend.agent(config) as agent:
        assert agent.describe()["tiers"]["l2"] == backend.name
        if kind == "l2":
            yield L2Store(agent.l2)
        elif kind == "l2-guarded":
            yield L2Store(agent.guarded_l2)
        else:
            yield AgentStore(agent)


VALUES = [
    {"name": "Ada", "scores": [1, 2.5, None], "nested": {"ok": True}},
    [],
    {},
    "",
    0,
    False,
    "ünïcødé ✓ 学习",
    9007199254740993,
    -1.5e-300,
    "x" * 200_000,
]


async def test_a_key_never_written_is_a_miss(store: Store) -> None:
    assert await store.read("never") is None
    assert await store.read_many(["never", "nor-this"]) == [None, None]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
async def test_what_is_written_reads_back_equal(store: Store, value: Any) -> None:
    await store.put("k", value)
    assert await store.read("k") == value


async def test_the_last_write_wins(store: Store) -> None:
    for i in range(5):
        await store.put("k", {"v": i})
    assert await store.read("k") == {"v": 4}


async def test_batch_reads_follow_the_order_asked(store: Store) -> None:
    await store.put("a", 1)
    await store.put("c", 3)
    assert await store.read_many(["c", "b", "a", "c"]) == [3, None, 1, 3]


async def test_delete_says_whether_the_key_was_there(store: Store) -> None:
    await store.put("k", 1)
    await store.put("other", 2)
    assert await store.remove("k") is True
    assert await store.remove("k") is False
    assert await store.read("k") is None
    assert await store.read("other") == 2


async def test_keys_are_exact_strings(store: Store) -> None:
    keys = ["user:1", "user:1:", "user:10", "User:1", "user:1 ", "ключ:1", "a*b", "a?[c]"]
    for i, key in enumerate(keys):
        await store.put(key, i)
    assert await store.read_many(keys) == list(range(len(keys)))
    assert await store.remove("a*b") is True
    assert await store.read_many(keys) == [0, 1, 2, 3, 4, 5, None, 7]


async def test_pattern_removes_exactly_the_matching_keys(store: Store) -> None:
    keys = ["user:1:profile", "user:22:profile", "user:1:path", "user:profile", "cat:1:profile"]
    for key in keys:
        await store.put(key, key)
    assert await store.remove_matching("user:*:profile") == 2
    assert await store.read_many(keys) == [None, None, "user:1:path", "user:profile", keys[4]]
    assert await store.remove_matching("user:?:pat?") == 1
    assert await store.remove_matching("nothing:*") == 0
    assert await store.read_many(keys) == [None, None, None, "user:profile", keys[4]]


async def test_an_entry_expires_after_its_ttl_and_not_before(store: Store) -> None:
    await store.put("short", 1, ttl=0.3)
    await store.put("long", 2, ttl=60)
    await store.put("again", 3, ttl=0.3)
    await store.put("again", 4, ttl=60)  # a rewrite sets a new TTL
    assert await store.read_many(["short", "long"]) == [1, 2]
    await asyncio.sleep(0.45)
    assert await store.read_many(["short", "long", "again"]) == [None, 2, 4]
