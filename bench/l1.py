"""In-process L1: get (hit) and set through ``CachingAgent`` beside the in-memory caches
people use today, in one run: cashews ``mem://``, aiocache ``SimpleMemoryCache``, theine
(sync) and cachetools ``LRUCache`` (sync and without expiry: the floor).

Every contender holds the same 1,000 small JSON values; a round reads (or writes) them
in a fixed shuffled order. Figures are the median of several rounds, in µs per call.
``CachingAgent.get`` returns a fresh decoded value (its L1 keeps JSON bytes), which is
what a caller of the others gets too when they hold objects it must not mutate.

    uv run python bench/l1.py
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import cachetools
import theine
from aiocache import SimpleMemoryCache
from benchlib import bar_plot, median, percentile, table, write_results
from cashews import Cache as CashewsCache

from cache_core import CachingAgent

KEYS = [f"user:{i}:profile" for i in range(1000)]
VALUE = {"name": "Ada", "level": 5, "skills": ["fractions", "ratios"], "streak": 12}
ROUNDS = 15
PASSES = 40  # reads of all KEYS per round
TTL = 600


def order() -> list[str]:
    keys = KEYS * PASSES
    random.Random(7).shuffle(keys)
    return keys


CHUNK = 100
"""Calls timed together: one call is too short for the clock, so percentiles are of the
per-call cost within chunks of this many calls."""


async def async_round(
    call: Callable[[str], Awaitable[Any]], keys: list[str], chunks: list[float]
) -> float:
    clock = time.perf_counter
    start = clock()
    for i in range(0, len(keys), CHUNK):
        began = clock()
        for key in keys[i : i + CHUNK]:
            await call(key)
        chunks.append((clock() - began) / CHUNK * 1e6)
    return (clock() - start) / len(keys) * 1e6


def sync_round(call: Callable[[str], Any], keys: list[str], chunks: list[float]) -> float:
    clock = time.perf_counter
    start = clock()
    for i in range(0, len(keys), CHUNK):
        began = clock()
        for key in keys[i : i + CHUNK]:
            call(key)
        chunks.append((clock() - began) / CHUNK * 1e6)
    return (clock() - start) / len(keys) * 1e6


async def main() -> None:
    keys = order()
    agent = CachingAgent.from_config(
        {
            "cache_tiers": {"l1": {"max_size_mb": 64, "ttl": TTL}},
            "compression": {"enable": False},
            "monitoring": {"alert_on_low_hit_rate": None, "alert_on_high_latency": None},
        },
        env={"CACHING_AGENT_PLUGINS": ""},
    )
    tinylfu = CachingAgent.from_config(
        {
            "cache_tiers": {"l1": {"max_size_mb": 64, "ttl": TTL, "eviction": "wtinylfu"}},
            "compression": {"enable": False},
            "monitoring": {"alert_on_low_hit_rate": None, "alert_on_high_latency": None},
        },
        env={"CACHING_AGENT_PLUGINS": ""},
    )
    # The same policy once its cache has been full: the climber and the recency guard
    # (a sampled LRU beside the cache) are at work from the first eviction on.
    full = CachingAgent.from_config(
        {
            "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": TTL, "eviction": "wtinylfu"}},
            "compression": {"enable": False},
            "monitoring": {"alert_on_low_hit_rate": None, "alert_on_high_latency": None},
        },
        env={"CACHING_AGENT_PLUGINS": ""},
    )
    cashews = CashewsCache()
    cashews.setup("mem://", size=10_000)
    aiocache = SimpleMemoryCache()
    the = theine.Cache(10_000)
    # LRUCache, no expiry: the floor of what a Python cache can cost (a dict and an order).
    tools: cachetools.LRUCache[str, Any] = cachetools.LRUCache(maxsize=10_000)

    async def agent_set(key: str) -> None:
        await agent.set(key, VALUE)

    async def tinylfu_set(key: str) -> None:
        await tinylfu.set(key, VALUE)

    async def full_set(key: str) -> None:
        await full.set(key, VALUE)

    async def cashews_set(key: str) -> None:
        await cashews.set(key, VALUE, expire=TTL)

    async def aiocache_set(key: str) -> None:
        await aiocache.set(key, VALUE, ttl=TTL)

    def theine_set(key: str) -> None:
        the.set(key, VALUE, timedelta(seconds=TTL))

    def tools_set(key: str) -> None:
        tools[key] = VALUE

    contenders: dict[str, tuple[Any, Any, bool]] = {
        "caching-agent": (agent.get, agent_set, True),
        "caching-agent, W-TinyLFU": (tinylfu.get, tinylfu_set, True),
        "caching-agent, W-TinyLFU, full": (full.get, full_set, True),
        "cashews mem://": (cashews.get, cashews_set, True),
        "aiocache": (aiocache.get, aiocache_set, True),
        "theine (sync)": (the.get, theine_set, False),
        "cachetools (sync)": (tools.get, tools_set, False),
    }
    results: dict[str, dict[str, list[float]]] = {
        name: {"get": [], "set": []} for name in contenders
    }
    chunks: dict[str, dict[str, list[float]]] = {
        name: {"get": [], "set": []} for name in contenders
    }
    async with agent, tinylfu, full:
        for i in range(8_000):  # overflow it first, so it evicts and the guard starts
            await full.set(f"filler:{i}", VALUE)
        for _ in range(3):  # asked for three times: admitted over the fillers
            for key in KEYS:
                await full_set(key)
        assert full.l1.evictions > 0 and all(key in full.l1 for key in KEYS)
        for _, setter, is_async in contenders.values():
            for key in KEYS:
                await setter(key) if is_async else setter(key)
        for name, (_, _, is_async) in contenders.items():
            value = contenders[name][0](KEYS[0])
            value = await value if is_async else value
            if name.startswith("theine"):
                value, found = value  # theine 2 answers (value, found)
                assert found
            assert value == VALUE, (name, value)
        for _ in range(ROUNDS):  # rounds interleave, so drift hits every contender alike
            for name, (getter, setter, is_async) in contenders.items():
                for op, call in (("get", getter), ("set", setter)):
                    sample = keys[: len(keys) // 4] if op == "set" else keys
                    spans = chunks[name][op]
                    us = (
                        await async_round(call, sample, spans)
                        if is_async
                        else sync_round(call, sample, spans)
                    )
                    results[name][op].append(us)
        assert all(key in full.l1 for key in KEYS)  # its gets were hits
        guard = full.l1.describe()["recency_guard"]  # type: ignore[attr-defined]
    await cashews.close()

    got = {name: {op: median(runs) for op, runs in ops.items()} for name, ops in results.items()}
    ours = got["caching-agent"]
    rows = [
        [
            name,
            got[name]["get"],
            got[name]["get"] / ours["get"],
            percentile(chunks[name]["get"], 50),
            percentile(chunks[name]["get"], 99),
            got[name]["set"],
            got[name]["set"] / ours["set"],
            percentile(chunks[name]["set"], 99),
        ]
        for name in contenders
    ]
    header = [
        "cache",
        "get µs",
        "get: x of ours",
        "get p50 µs",
        "get p99 µs",
        "set µs",
        "set: x of ours",
        "set p99 µs",
    ]
    text = table(header, rows)
    cashews_x = got["cashews mem://"]["get"] / ours["get"]
    verdict = (
        f"Target: an L1 get through the async API at least 4x faster than cashews `mem://`"
        f" and at most 1 µs. Measured: x{cashews_x:.2f} faster, {ours['get']:.3f} µs"
        f" ({'met' if cashews_x >= 4 and ours['get'] <= 1 else 'NOT met'})."
    )
    tinylfu_x = got["caching-agent, W-TinyLFU"]["get"] / ours["get"]
    verdict += (
        f" An L1 get with W-TinyLFU eviction costs x{tinylfu_x:.2f} an LRU one (target: at"
        f" most x1.5: {'met' if tinylfu_x <= 1.5 else 'NOT met'})."
    )
    full_x = got["caching-agent, W-TinyLFU, full"]["get"] / ours["get"]
    verdict += (
        f" Once its cache has been full (1 MB here, the recency guard following one key in"
        f" {guard['sample_rate']}), it costs x{full_x:.2f}"
        f" ({'met' if full_x <= 1.5 else 'NOT met'})."
    )
    print(text)
    print(verdict)
    write_results(
        "l1",
        "L1 in process: get (hit) and set",
        f"`uv run python bench/l1.py`: median of {ROUNDS} interleaved rounds, 1,000 keys,"
        f" a small JSON value; percentiles of the per-call cost in chunks of {CHUNK} calls."
        f"\n\n{text}\n\n{verdict}\n",
    )
    bar_plot(
        "l1",
        "In-process cache: µs per call (lower is better)",
        {op: {name: got[name][op] for name in contenders} for op in ("get", "set")},
        "µs per call",
        log=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
