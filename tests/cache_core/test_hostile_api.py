"""The Python API under what a caller can get wrong or cut short, against a real engine:
a cancelled probe, a cancelled flush, text no UTF-8 can carry, numbers beyond a float, a
write the write-back buffer could never hold, and two overlapping writes of one key."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cache_core import CachingAgent, InvalidKeyError, InvalidValueError
from cache_core.strategies import WriteBack


def config(engine: Any, prefix: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
        "strategies": {"default": "write_through", "write_back": {"flush_interval": 0.1}},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
async def agent(engine: Any, prefix: str) -> AsyncIterator[CachingAgent]:
    async with CachingAgent.from_config(config(engine, prefix), env={}) as made:
        yield made


async def test_a_cancelled_probe_gives_its_slot_back(agent: CachingAgent) -> None:
    """Before, the breaker stayed half-open for good: every L2 call a 503 until restart."""
    await agent.set("k", 1)
    breaker = agent.breaker
    for _ in range(breaker.failure_threshold):
        breaker.failure("test: L2 away")
    await asyncio.sleep(breaker.wait + 0.05)
    agent.l1.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(agent.get("k"), timeout=0.0001)  # the probe, cut short
    assert await agent.get("k") == 1
    assert breaker.state == "closed"


async def test_a_flush_cut_short_puts_its_batch_back(
    engine: Any, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a shutdown during a flush lost the batch in flight, and said nothing."""
    async with CachingAgent.from_config(config(engine, prefix), env={}) as agent:
        assert agent.l2 is not None
        real = agent.l2.set_unless_newer  # type: ignore[attr-defined]

        async def slow(items: Any, horizon: int) -> Any:
            await asyncio.sleep(0.5)
            return await real(items, horizon)

        monkeypatch.setattr(agent.l2, "set_unless_newer", slow)
        await agent.set("k1", "v1", strategy="write_back")
        write_back = agent.strategies["write_back"]
        assert isinstance(write_back, WriteBack)
        await asyncio.sleep(0.3)  # the periodic flush is in flight
        assert agent.write_back_pending() == 1
    assert engine.client.get(f"{prefix}k1") is not None  # close() landed it
    assert write_back.describe()["pending"] == 0


async def test_text_no_utf8_can_carry_is_refused_up_front(agent: CachingAgent) -> None:
    with pytest.raises(InvalidKeyError, match="surrogates"):
        await agent.set("bad\udcff", 1, strategy="write_back")
    with pytest.raises(InvalidKeyError, match="surrogates"):
        await agent.get("bad\udcff")
    with pytest.raises(InvalidValueError):
        await agent.set("k", 1, tags=["t\ud800"])
    with pytest.raises(InvalidKeyError, match="surrogates"):
        await agent.invalidate_pattern("a\ud800*")
    assert agent.write_back_pending() == 0
    assert agent.breaker.state == "closed"


async def test_a_ttl_beyond_any_float_is_an_invalid_value(agent: CachingAgent) -> None:
    with pytest.raises(InvalidValueError, match="max_ttl"):
        await agent.set("k", 1, ttl=10**400)
    with pytest.raises(InvalidValueError):
        await agent.set("k", 1, ttl=float("nan"))


async def test_a_write_the_buffer_could_never_hold_is_a_400_that_changes_nothing(
    engine: Any, prefix: str
) -> None:
    """A 400, not a 503 (L2 is fine), and refused before the index took its tags."""
    cfg = config(engine, prefix)
    cfg["strategies"]["write_back"]["max_pending_mb"] = 0.5
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("k", "old", tags=["a"])
        with pytest.raises(InvalidValueError, match="can never be buffered"):
            await agent.set_many({f"k{i}": "x" * 200_000 for i in range(3)}, strategy="write_back")
        with pytest.raises(InvalidValueError, match="can never be buffered"):
            await agent.set("k", "x" * 600_000, strategy="write_back", tags=["b"])
        assert agent.write_back_pending() == 0
        assert agent.index is not None
        assert await agent.index.keys_for_tags(["b"]) == set()
        assert await agent.index.keys_for_tags(["a"]) == {"k"}
        assert await agent.get("k") == "old"
        await agent.set_many({"small": 1}, strategy="write_back")


@pytest.mark.parametrize("backend", ["local", "redis"])
async def test_overlapping_writes_of_one_key_keep_both_tags(
    engine: Any, prefix: str, backend: str
) -> None:
    cfg = config(engine, prefix, invalidation={"backend": backend})
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("k", "old", tags=["x"])
        await asyncio.gather(agent.set("k", "v1", tags=["a"]), agent.set("k", "v2", tags=["b"]))
        assert await agent.invalidate_by_tags(["a", "b"]) == 1
        assert await agent.get("k") is None
