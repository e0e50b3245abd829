"""Refresh-ahead and stale-if-error for loaded keys (cache_core/freshness.py), on the real
engine: past its refresh point a hot key is answered at once while one background reload
runs for every instance; past its TTL, a failing loader is answered with the old value."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

import pytest
from attrs import define, field

from cache_core import CachingAgent, ConfigError, LoaderError, NotFound, hookimpl


class SlowLoader:
    """Answers ``{"v": n}``, n counting its calls, after ``delay`` seconds; fails while
    ``FAIL`` is set."""

    PLUGIN_NAME: ClassVar[str] = "slow"
    CALLS: ClassVar[list[str]] = []
    FAIL: ClassVar[bool] = False
    GONE: ClassVar[bool] = False

    @define(frozen=True)
    class Options:
        match: list[str] = field(factory=list)
        delay: float = 0.3

    def __init__(self, options: SlowLoader.Options, context: object = None) -> None:
        self.match = list(options.match)
        self.delay = options.delay

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load(self, key: str, ids: Any) -> Any:
        type(self).CALLS.append(key)
        await asyncio.sleep(self.delay)
        if type(self).FAIL:
            raise RuntimeError("the source is down")
        if type(self).GONE:
            raise NotFound(key)
        return {"v": len(type(self).CALLS)}


class Plugin:
    @hookimpl
    def cache_register_loaders(self) -> list[type[Any]]:
        return [SlowLoader]


@pytest.fixture(autouse=True)
def fresh_loader() -> None:
    SlowLoader.CALLS = []
    SlowLoader.FAIL = False
    SlowLoader.GONE = False


def config(engine: Any, prefix: str, ttl: float, **freshness: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "cache_policies": {"reports": {"match": ["r:*"], "ttl": ttl}},
        "loaders": {"slow": {"match": ["r:{id}"], **freshness}},
    }


async def test_hits_past_the_refresh_point_answer_at_once_and_reload_once(
    engine: Any, prefix: str
) -> None:
    cfg = config(engine, prefix, ttl=4, refresh_ahead=0.25, delay=1.0)
    async with (
        CachingAgent.from_config(cfg, plugins=[Plugin()], env={}) as a,
        CachingAgent.from_config(cfg, plugins=[Plugin()], env={}) as b,
    ):
        assert await a.get("r:1") == {"v": 1}
        assert await b.get("r:1") == {"v": 1}  # from L2: still one call
        await asyncio.sleep(1.1)  # past the refresh point (a quarter of 4 s)
        start = time.monotonic()
        answers = await asyncio.gather(*(agent.get("r:1") for agent in (a, b) for _ in range(500)))
        waited = time.monotonic() - start
        assert answers == [{"v": 1}] * 1000
        assert waited < 0.8, waited  # a loader call takes 1 s: nobody waited for one
        for _ in range(200):
            if len(SlowLoader.CALLS) == 2 and await a.get("r:1") == {"v": 2}:
                break
            await asyncio.sleep(0.02)
        assert await a.get("r:1") == {"v": 2}
        for _ in range(100):  # B drops its copy on A's notice, then reads the new value
            if await b.get("r:1") == {"v": 2}:
                break
            await asyncio.sleep(0.02)
        assert await b.get("r:1") == {"v": 2}
        assert SlowLoader.CALLS == ["r:1", "r:1"]  # one reload for both instances


async def test_a_failing_loader_past_the_ttl_answers_the_stale_value(
    engine: Any, prefix: str
) -> None:
    cfg = config(engine, prefix, ttl=1, stale_if_error=5)
    async with CachingAgent.from_config(cfg, plugins=[Plugin()], env={}) as agent:
        assert await agent.get("r:2") == {"v": 1}
        await asyncio.sleep(1.1)  # past its TTL, inside the stale window
        SlowLoader.FAIL = True
        assert await agent.get("r:2") == {"v": 1}  # reloaded, failed: the old value
        assert await agent.get_many(["r:2"]) == {"r:2": {"v": 1}}
        assert agent.get_stats()["served_stale"] == 2
        SlowLoader.FAIL = False
        assert await agent.get("r:2") == {"v": 4}  # past its TTL: reloaded by the reader
        assert await agent.get("r:2") == {"v": 4}  # and fresh again
    without = config(engine, prefix + "w:", ttl=1)
    async with CachingAgent.from_config(without, plugins=[Plugin()], env={}) as agent:
        assert await agent.get("r:3") == {"v": 5}
        await asyncio.sleep(1.1)
        SlowLoader.FAIL = True
        with pytest.raises(LoaderError):  # no stale window: the error, as before
            await agent.get("r:3")


async def test_a_batch_past_the_refresh_point_answers_and_refreshes(
    engine: Any, prefix: str
) -> None:
    cfg = config(engine, prefix, ttl=1, refresh_ahead=0.5, delay=0.05)
    async with CachingAgent.from_config(cfg, plugins=[Plugin()], env={}) as agent:
        assert await agent.get("r:a") == {"v": 1}
        assert await agent.get("r:b") == {"v": 2}
        await asyncio.sleep(0.6)
        assert await agent.get_many(["r:a", "r:b"]) == {"r:a": {"v": 1}, "r:b": {"v": 2}}
        await asyncio.sleep(0.2)
        assert sorted(SlowLoader.CALLS) == ["r:a", "r:a", "r:b", "r:b"]
        refreshed = await agent.get_many(["r:a", "r:b"])
        assert all(value["v"] > 2 for value in refreshed.values()), refreshed


async def test_a_refresh_that_finds_nothing_is_not_retried_at_every_hit(
    engine: Any, prefix: str
) -> None:
    cfg = config(engine, prefix, ttl=4, refresh_ahead=0.25, delay=0.01)
    async with CachingAgent.from_config(cfg, plugins=[Plugin()], env={}) as agent:
        assert await agent.get("r:g") == {"v": 1}
        await asyncio.sleep(1.1)  # past the refresh point
        SlowLoader.GONE = True
        answers = []
        for _ in range(40):
            answers.append(await agent.get("r:g"))
            await asyncio.sleep(0.02)
        assert SlowLoader.CALLS == ["r:g", "r:g"]  # one refresh, not one a hit
        assert answers == [{"v": 1}] * 40  # answered until its TTL


@pytest.mark.parametrize(
    ("freshness", "message"),
    [
        ({"refresh_ahead": 1.5}, "refresh_ahead: a fraction of the TTL between 0 and 1"),
        ({"refresh_ahead": 0}, "refresh_ahead: a fraction"),
        ({"refresh_ahead": True}, "refresh_ahead: a fraction"),
        ({"stale_if_error": -1}, "stale_if_error: seconds from 0"),
        ({"stale_if_error": float("inf")}, "stale_if_error: seconds from 0"),
        ({"stale_if_error": "5"}, "stale_if_error: seconds from 0"),
    ],
)
def test_bad_settings_are_config_errors(
    engine: Any, prefix: str, freshness: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        CachingAgent.from_config(
            config(engine, prefix, ttl=1, **freshness), plugins=[Plugin()], env={}
        )


def test_without_l2_they_are_refused_naming_why() -> None:
    cfg = {
        "cache_tiers": {"l1": {"max_size_mb": 4}},
        "loaders": {"slow": {"match": ["r:{id}"], "refresh_ahead": 0.5}},
    }
    with pytest.raises(ConfigError, match=r"loaders\.slow: refresh_ahead and stale_if_error"):
        CachingAgent.from_config(cfg, plugins=[Plugin()], env={})
