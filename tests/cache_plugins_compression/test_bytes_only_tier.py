"""An L2 tier that only stores bytes (as a third party writes one from the protocol alone)
gets what the Redis tier gets: values above compression.threshold_bytes stored gzip-framed
by core, read back whatever codec wrote them, and a planted bad frame refused per key."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import pytest
from attrs import define

from cache_core import CachingAgent, CorruptEntryError, hookimpl
from cache_core.errors import CacheError
from cache_core.frames import MAGIC, RAW_CODEC_ID, VERSION
from cache_core.globs import matcher
from cache_core.tiers.base import CoherenceListener, TierContext
from cache_plugins_compression.gzip_codec import GzipCodec


class BytesTier:
    """Storage only: a dict of (bytes, expiry), nothing read or framed."""

    PLUGIN_NAME: ClassVar[str] = "bytes_only"

    @define(frozen=True)
    class Options:
        ttl: float | None = 3600.0

    def __init__(self, options: BytesTier.Options, context: TierContext) -> None:
        self.default_ttl = options.ttl
        self.stored: dict[str, tuple[bytes, float]] = {}
        self._locks: dict[str, str] = {}

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    def _live(self, key: str) -> bytes | None:
        entry = self.stored.get(key)
        if entry is not None and entry[1] <= time.monotonic():
            del self.stored[key]
            return None
        return None if entry is None else entry[0]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(key) for key in keys]

    async def set(self, key: str, data: bytes, ttl: float | None) -> None:
        expiry = float("inf") if ttl is None else time.monotonic() + ttl
        self.stored[key] = (data, expiry)

    async def set_many(self, items: Sequence[tuple[str, bytes, float | None]]) -> None:
        for key, data, ttl in items:
            await self.set(key, data, ttl)

    async def delete(self, keys: Sequence[str]) -> list[str]:
        return [key for key in keys if self._live(key) is not None and self.stored.pop(key)]

    async def delete_matching(self, pattern: str) -> list[str]:
        check = matcher(pattern)
        return await self.delete([key for key in list(self.stored) if check(key)])

    async def count(self) -> int:
        return sum(self._live(key) is not None for key in list(self.stored))

    def describe(self) -> dict[str, Any]:
        return {"backend": "a dict"}

    def attach(self, listener: CoherenceListener) -> bool:
        return False  # private to this process: L1 serves at once

    async def try_lock(self, name: str, lease: float) -> str | None:
        return None if name in self._locks else self._locks.setdefault(name, "token")

    async def unlock(self, name: str, token: str) -> None:
        if self._locks.get(name) == token:
            del self._locks[name]


class Plugins:
    @hookimpl
    def cache_register_tiers(self) -> list[type[Any]]:
        return [BytesTier]

    @hookimpl
    def cache_register_codecs(self) -> list[type[Any]]:
        return [GzipCodec]


THRESHOLD = 256
LARGE = {"steps": [{"id": f"step-{i}", "title": "Fractions"} for i in range(40)]}
SMALL = {"id": 1}


@pytest.fixture
async def agent() -> Any:
    config = {
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "bytes_only"}},
        "compression": {"algorithm": "gzip", "threshold_bytes": THRESHOLD},
        "cache_policies": {"raw": {"match": ["raw:*"], "compress": False}},
    }
    env = {"CACHING_AGENT_PLUGINS": ""}  # this test's plugins only, whatever is installed
    async with CachingAgent.from_config(config, plugins=[Plugins()], env=env) as built:
        yield built


def tier(agent: CachingAgent) -> BytesTier:
    assert isinstance(agent.l2, BytesTier)
    return agent.l2


async def test_values_above_the_threshold_are_stored_gzip_framed_and_read_back(
    agent: CachingAgent,
) -> None:
    large_json = orjson.dumps(LARGE)
    assert len(large_json) > THRESHOLD > len(orjson.dumps(SMALL))
    await agent.set_many({"large": LARGE, "small": SMALL, "raw:large": LARGE})
    stored = {key: data for key, (data, _) in tier(agent).stored.items()}
    assert stored["large"][:3] == bytes((MAGIC, VERSION, GzipCodec.CODEC_ID))
    assert len(stored["large"]) < len(large_json)
    assert stored["small"][:3] == bytes((MAGIC, VERSION, RAW_CODEC_ID))
    assert stored["small"].endswith(orjson.dumps(SMALL))
    # The policy says not to: framed, not compressed.
    assert stored["raw:large"][:3] == bytes((MAGIC, VERSION, RAW_CODEC_ID))
    agent.l1.clear()  # every read below comes from the tier's bytes
    assert await agent.get_many(["large", "small", "raw:large"]) == {
        "large": LARGE,
        "small": SMALL,
        "raw:large": LARGE,
    }
    assert agent.stats.hits_l2 == 3
    assert agent.get_stats()["compression"]["gzip"]["frames"] == 1


async def test_a_planted_bad_frame_is_a_corrupt_entry_of_its_key_alone(
    agent: CachingAgent,
) -> None:
    await agent.set("good", SMALL, strategy="write_around")
    header = bytes((MAGIC, VERSION, GzipCodec.CODEC_ID)) + bytes(8)
    planted = header + (9000).to_bytes(4, "big") + GzipCodec().compress(b"{not json" * 1000)
    tier(agent).stored["bad"] = (planted, float("inf"))
    tier(agent).stored["stray"] = (b'{"a pickle, or anything": 1}', float("inf"))
    for key in ("bad", "stray"):
        with pytest.raises(CorruptEntryError):
            await agent.get(key)
        assert key not in agent.l1  # never promoted
    failures: dict[str, CacheError] = {}
    found = await agent.lookup_many(["bad", "good", "stray"], failures)
    assert found["good"] == (orjson.dumps(SMALL), "l2")
    assert found["bad"] is None and found["stray"] is None
    assert sorted(failures) == ["bad", "stray"]
    assert all(isinstance(error, CorruptEntryError) for error in failures.values())


async def test_a_write_that_carries_its_policy_is_not_matched_again(
    agent: CachingAgent,
) -> None:
    """Where the agent matched the policy already, the flag it carries decides, even
    against what matching the key here would say."""
    guarded = agent.guarded_l2
    assert guarded is not None
    data = orjson.dumps(LARGE)
    await guarded.set("raw:carried", data, 60, compress=True)
    await guarded.set_many([("plain", data, 60, False), ("matched", data, 60)])
    codec_ids = {key: frame[2] for key, (frame, _) in tier(agent).stored.items()}
    assert codec_ids == {
        "raw:carried": GzipCodec.CODEC_ID,
        "plain": RAW_CODEC_ID,
        "matched": GzipCodec.CODEC_ID,
    }
    found = await guarded.get_many(["raw:carried", "plain", "matched"])
    assert [getattr(entry, "data", None) for entry in found] == [data] * 3


async def test_with_every_plugin_installed_auto_picks_an_index_this_tier_can_hold() -> None:
    # The Redis index is installed too; `auto` must not pick it for an L2 it cannot live
    # in (it used to: "'redis' needs cache_tiers.l2.type: redis", a setting nobody wrote).
    config = {"cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "bytes_only"}}}
    async with CachingAgent.from_config(config, plugins=[Plugins()]) as built:
        assert "redis" in built.registry.names("invalidator")
        assert built.describe()["invalidation"] == "local"
        await built.set("k", 1, tags=["t"])
        assert await built.invalidate_by_tags(["t"]) == 1


@pytest.mark.parametrize("strategy", ["write_through", "write_around", "write_back"])
async def test_a_write_matches_its_policy_once(
    agent: CachingAgent, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    # TTL, strategy and compression come from one match, carried with the write to L2
    # (the guard used to match the key again to decide on compression).
    calls: list[str] = []
    match = agent.policies.match

    def counted(key: str) -> Any:
        calls.append(key)
        return match(key)

    monkeypatch.setattr(agent.policies, "match", counted)
    await agent.set("raw:large", LARGE, strategy=strategy)
    await agent.set_many({"large": LARGE, "raw:other": LARGE}, strategy=strategy)
    for buffer in agent.buffers:
        await buffer.flush()  # type: ignore[attr-defined]
    assert sorted(calls) == ["large", "raw:large", "raw:other"]
    stored = {key: data for key, (data, _) in tier(agent).stored.items()}
    assert stored["raw:large"][:3] == bytes((MAGIC, VERSION, RAW_CODEC_ID))
    assert stored["large"][:3] == bytes((MAGIC, VERSION, GzipCodec.CODEC_ID))
