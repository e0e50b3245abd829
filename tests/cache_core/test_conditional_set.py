"""ConditionalSet, the optional capability of an L2 tier: with it, core writes only where
the stored frame's stamp is older, so a write_back flush never puts an instance's older
value over a newer one, and the instance whose write was refused drops its L1 copy;
without it (a storage-only tier), the last write to land wins, as RemoteTier says."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from attrs import define

import cache_core
from cache_core import CachingAgent
from cache_core.frames import HEADER_SIZE, UNSTAMPED, frame_stamp
from cache_core.strategies import WriteBack
from cache_core.tiers.base import ConditionalSet, RemoteTier


class PlainTier:
    """Storage only, in one dict every agent of the test shares (as instances share a
    store); entries never expire (the tests write none that should)."""

    PLUGIN_NAME: ClassVar[str] = "plain"
    STORE: ClassVar[dict[str, bytes]] = {}

    @define(frozen=True)
    class Options:
        ttl: float | None = None

    def __init__(self, options: Any, context: Any) -> None:
        self.default_ttl = options.ttl

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def get(self, key: str) -> bytes | None:
        return self.STORE.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.STORE.get(key) for key in keys]

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        self.STORE[key] = data

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, data, _ in items:
            self.STORE[key] = data

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if self.STORE.pop(key, None) is not None]

    async def delete_matching(self, pattern: str) -> list[str]:
        raise NotImplementedError

    async def count(self) -> int:
        return len(self.STORE)

    def describe(self) -> dict[str, Any]:
        return {}

    def attach(self, listener: Any) -> bool:
        return False  # reports no other instance's change: L1 serves from the start

    async def try_lock(self, name: str, lease: float) -> str | None:
        return "token"

    async def unlock(self, name: str, token: str) -> None:
        return None


class VersionedTier(PlainTier):
    PLUGIN_NAME: ClassVar[str] = "versioned"

    async def set_unless_newer(
        self, items: Sequence[tuple[str, bytes, float | None, int]], horizon: int
    ) -> list[int | None]:
        kept: list[int | None] = []
        for key, data, _, stamp in items:
            held = self.STORE.get(key)
            stored = UNSTAMPED if held is None else frame_stamp(held)
            if stamp <= stored <= horizon:
                kept.append(stored)
            else:
                self.STORE[key] = data
                kept.append(None)
        return kept


class Tiers:
    @cache_core.hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [PlainTier, VersionedTier]


@pytest.fixture(autouse=True)
def empty_store() -> Iterator[None]:
    PlainTier.STORE.clear()
    yield
    PlainTier.STORE.clear()


def config(tier: str) -> dict[str, Any]:
    return {
        "cache_tiers": {
            "l1": {"type": "memory", "max_size_mb": 1, "ttl": 60},
            "l2": {"type": tier},
        },
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 3600}},
        "compression": {"enable": False},
    }


def stored(key: str) -> bytes:
    return PlainTier.STORE[key][HEADER_SIZE:]


async def lost_update(make_agent: Any, tier: str) -> tuple[CachingAgent, CachingAgent]:
    """A writes ``k`` with write_back, B then writes it with write_through, A flushes."""
    a = await make_agent(config(tier), plugins=(Tiers(),))
    b = await make_agent(config(tier), plugins=(Tiers(),))
    await a.set("k", "old", strategy="write_back")
    await b.set("k", "new", strategy="write_through")
    write_back = a.strategies["write_back"]
    assert isinstance(write_back, WriteBack)
    assert await write_back.flush() == 1
    return a, b


def test_the_capability_is_optional() -> None:
    tier = VersionedTier(VersionedTier.Options(), None)
    assert isinstance(tier, RemoteTier) and isinstance(tier, ConditionalSet)
    plain = PlainTier(PlainTier.Options(), None)
    assert isinstance(plain, RemoteTier) and not isinstance(plain, ConditionalSet)


async def test_a_tier_with_a_conditional_set_keeps_the_newer_write(make_agent: Any) -> None:
    a, b = await lost_update(make_agent, "versioned")
    assert stored("k") == b'"new"'
    # No notice reaches A (the tier reports none): the refusal alone dropped its L1 copy.
    assert "k" not in a.l1
    assert await a.get("k") == "new"
    assert await b.get("k") == "new"
    assert a.guarded_l2 is not None and a.guarded_l2.superseded == 1


async def test_a_storage_only_tier_keeps_the_last_write_to_land(make_agent: Any) -> None:
    a, _ = await lost_update(make_agent, "plain")
    assert stored("k") == b'"old"'  # last writer wins: what RemoteTier's docstring says
    assert a.guarded_l2 is not None and a.guarded_l2.superseded == 0
