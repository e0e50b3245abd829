"""CachingAgent with L1 alone: round trips, single-flight, TTLs and policies, patterns, bad
input, statistics and warm-up (tags, dependencies and events:
tests/cache_plugins_invalidation/test_tags_dependencies_events.py). Writes here carry
tags, so the invalidation plugin is registered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cache_core import (
    CacheStrategy,
    CachingAgent,
    InvalidKeyError,
    InvalidValueError,
    UnknownNameError,
)
from cache_core.agent_view import AgentView


@pytest.fixture
async def agent(small_agent: CachingAgent) -> CachingAgent:
    return small_agent


async def counters(agent: CachingAgent) -> dict[str, Any]:
    stats = await agent.fetch_stats()
    return {
        k: stats[k]
        for k in ("hits", "misses", "sets", "deletes", "l1_entries", "l1_size_bytes", "invalidated")
    }


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"name": "Alice", "level": 5},
        [1, "two", 3.5, None, True],
        "text",
        42,
        2.5,
        False,
        {"nested": {"deep": [{"x": 1}]}},
        "",
        [],
        {},
    ],
)
async def test_set_get_round_trip(agent: CachingAgent, value: Any) -> None:
    assert await agent.set("user:1:profile", value) == "write_through"
    assert await agent.get("user:1:profile") == value


async def test_get_miss_returns_the_default(agent: CachingAgent) -> None:
    assert await agent.get("nope") is None
    assert await agent.get("nope", default="d") == "d"
    await agent.set("null", None)
    assert await agent.get("null", default="d") is None  # a stored null is a hit


async def test_lookup_l1_counts_a_hit_as_lookup_does_and_a_miss_not_at_all(
    agent: CachingAgent,
) -> None:
    await agent.set("k", {"a": 1})
    stats = agent.stats

    def counts() -> tuple[int, int, int]:
        return stats.hits_l1, stats.misses, sum(stats.latency_counts())

    before = counts()
    assert agent.lookup_l1("k") == b'{"a":1}'
    assert counts() == (before[0] + 1, before[1], before[2] + 1)
    assert agent.lookup_l1("nope") is None
    assert counts() == (before[0] + 1, before[1], before[2] + 1)
    assert await agent.lookup("nope") is None  # the caller's next step counts the miss
    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 2)


async def test_set_overwrites(agent: CachingAgent) -> None:
    await agent.set("k", 1)
    await agent.set("k", 2)
    assert await agent.get("k") == 2
    assert len(agent.l1) == 1


async def test_delete(agent: CachingAgent) -> None:
    await agent.set("k", 1)
    assert await agent.delete("k") is True
    assert await agent.get("k") is None
    assert await agent.delete("k") is False
    assert "k" not in agent.l1


async def test_get_many_and_set_many(agent: CachingAgent) -> None:
    assert await agent.set_many({"a": 1, "b": {"x": 2}, "c": [3]}) == 3
    assert await agent.get_many(["a", "b", "c", "missing"]) == {
        "a": 1,
        "b": {"x": 2},
        "c": [3],
        "missing": None,
    }
    assert await agent.get_many([]) == {}
    assert await agent.get_many(["a", "a"]) == {"a": 1}


async def test_set_many_with_ttl_and_tags(agent: CachingAgent, clock) -> None:
    await agent.set_many({"a": 1, "b": 2}, ttl=5, tags=["batch"])
    clock.advance(4.9)
    assert await agent.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert await agent.invalidate_by_tags(["batch"]) == 2
    await agent.set_many({"a": 1, "b": 2}, ttl="short")
    clock.advance(10)
    assert await agent.get_many(["a", "b"]) == {"a": None, "b": None}


async def test_batches_over_the_limit_are_refused(agent: CachingAgent) -> None:
    with pytest.raises(InvalidValueError):
        await agent.set_many({f"k{i}": i for i in range(6)})
    with pytest.raises(InvalidValueError):
        await agent.get_many([f"k{i}" for i in range(6)])
    assert len(agent.l1) == 0


# -- get_or_compute ------------------------------------------------------------------------


async def test_get_or_compute_is_single_flight(agent: CachingAgent) -> None:
    calls = 0
    release = asyncio.Event()

    async def compute() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"n": calls}

    callers = [asyncio.create_task(agent.get_or_compute("model:x", compute)) for _ in range(10)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert calls == 1  # every caller is waiting on the one computation
    assert not any(task.done() for task in callers)
    release.set()
    results = await asyncio.gather(*callers)
    assert calls == 1
    assert results == [{"n": 1}] * 10
    assert await agent.get("model:x") == {"n": 1}
    assert await agent.get_or_compute("model:x", compute) == {"n": 1}
    assert calls == 1


async def test_get_or_compute_accepts_a_sync_function_and_options(
    agent: CachingAgent, clock
) -> None:
    assert await agent.get_or_compute("k", lambda: [1, 2], ttl=5, tags=["t"]) == [1, 2]
    assert await agent.get("k") == [1, 2]
    clock.advance(5)
    assert await agent.get("k") is None
    await agent.get_or_compute("k", lambda: 1, tags=["t"])
    assert await agent.invalidate_by_tags(["t"]) == 1


async def test_get_or_compute_failure_reaches_every_caller_and_caches_nothing(
    agent: CachingAgent,
) -> None:
    calls = 0

    async def boom() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise RuntimeError("source down")

    results = await asyncio.gather(
        *(agent.get_or_compute("k", boom) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, RuntimeError) for r in results)
    assert "k" not in agent.l1
    assert await agent.get_or_compute("k", lambda: "ok") == "ok"  # the next call retries


async def test_cancelling_the_first_caller_does_not_cancel_the_others(
    agent: CachingAgent,
) -> None:
    release = asyncio.Event()

    async def compute() -> str:
        await release.wait()
        return "value"

    first = asyncio.create_task(agent.get_or_compute("k", compute))
    await asyncio.sleep(0)
    second = asyncio.create_task(agent.get_or_compute("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    done, _ = await asyncio.wait([second], timeout=1)
    assert second in done
    assert not second.cancelled()
    assert second.result() == "value"


# -- TTLs, presets, policies ---------------------------------------------------------------


async def test_default_ttl_is_l1s_when_there_is_no_l2(agent: CachingAgent, clock) -> None:
    await agent.set("k", 1)
    clock.advance(299)
    assert await agent.get("k") == 1
    clock.advance(1)
    assert await agent.get("k") is None


async def test_explicit_ttl_in_seconds(agent: CachingAgent, clock) -> None:
    await agent.set("k", 1, ttl=2.5)
    clock.advance(2.4)
    assert await agent.get("k") == 1
    clock.advance(0.1)
    assert await agent.get("k") is None


async def test_ttl_presets(agent: CachingAgent, clock) -> None:
    await agent.set("short", 1, ttl="short")
    await agent.set("long", 1, ttl="long")
    clock.advance(10)
    assert await agent.get("short") is None
    assert await agent.get("long") == 1


async def test_policies_give_ttl_and_strategy_by_key(make_agent, base_config, clock) -> None:
    agent = await make_agent(
        base_config(
            ttl_presets={"short": 10},
            cache_policies={
                "p": {"match": ["model:*"], "ttl": 5, "strategy": "write_back"},
                "q": {"match": ["model:special", "graph:*"], "ttl": "short"},
            },
        )
    )
    assert await agent.set("model:x", 1) == "write_back"
    assert await agent.set("model:special", 1) == "write_back"  # the first policy wins
    assert await agent.set("graph:1", 1) == "write_through"
    assert await agent.set("other", 1) == "write_through"
    assert await agent.set("model:y", 1, ttl=100, strategy="write_around") == "write_around"
    clock.advance(5)
    assert await agent.get("model:x") is None
    assert await agent.get("model:special") is None
    assert await agent.get("model:y") == 1  # an explicit ttl wins over the policy's
    assert await agent.get("graph:1") == 1
    clock.advance(5)
    assert await agent.get("graph:1") is None
    assert await agent.get("other") == 1


async def test_strategy_enum_is_accepted(agent: CachingAgent) -> None:
    assert await agent.set("k", 1, strategy=CacheStrategy.WRITE_BACK) == "write_back"
    assert await agent.set("k", 2, strategy=CacheStrategy.WRITE_AROUND) == "write_around"
    assert await agent.get("k") == 2  # with no L2, L1 is the store for every strategy


# -- patterns ------------------------------------------------------------------------------


async def test_invalidate_pattern(agent: CachingAgent) -> None:
    await agent.set_many({"user:1:profile": 1, "user:2:profile": 2, "user:1:settings": 3})
    await agent.set_many({"user:x*y:profile": 4, "users": 5})
    assert await agent.invalidate_pattern("user:?:profile") == 2
    assert await agent.invalidate_pattern("user:x\\*y:profile") == 1
    assert await agent.invalidate_pattern("user:1:settings") == 1  # a literal key
    assert await agent.invalidate_pattern("nothing:*") == 0
    assert await agent.get_many(["user:1:profile", "user:1:settings", "users"]) == {
        "user:1:profile": None,
        "user:1:settings": None,
        "users": 5,
    }
    assert agent.stats.invalidated == 4


async def test_pattern_classes_need_to_be_allowed(make_agent, base_config) -> None:
    strict = await make_agent(base_config())
    await strict.set("user:a", 1)
    with pytest.raises(InvalidKeyError, match="class"):
        await strict.invalidate_pattern("user:[a-c]")
    assert await strict.get("user:a") == 1
    relaxed = await make_agent(base_config(limits={"allow_pattern_classes": True}))
    await relaxed.set_many({"user:a": 1, "user:b": 1, "user:d": 1})
    assert await relaxed.invalidate_pattern("user:[a-c]") == 2
    assert await relaxed.invalidate_pattern("user:[^a]") == 1


@pytest.mark.parametrize(
    "pattern",
    ["", "bad\npattern", "*" * 9, "k" * 300],
)
async def test_bad_patterns_are_refused(agent: CachingAgent, pattern: str) -> None:
    await agent.set("k", 1)
    with pytest.raises(InvalidKeyError):
        await agent.invalidate_pattern(pattern)
    assert await agent.get("k") == 1


# -- bad input changes nothing -------------------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[CachingAgent], Awaitable[Any]], type[Exception]]] = [
    ("empty-key", lambda a: a.set("", 1), InvalidKeyError),
    ("newline-in-key", lambda a: a.set("a\nb", 1), InvalidKeyError),
    ("nul-in-key", lambda a: a.set("a\x00b", 1), InvalidKeyError),
    ("del-in-key", lambda a: a.set("a\x7f", 1), InvalidKeyError),
    ("c1-in-key", lambda a: a.set("a\x85", 1), InvalidKeyError),
    ("key-too-long", lambda a: a.set("k" * 65, 1), InvalidKeyError),
    (
        "key-not-a-string",
        lambda a: a.set(1, 1),  # type: ignore[arg-type]
        InvalidKeyError,
    ),
    ("value-not-json", lambda a: a.set("k", object()), InvalidValueError),
    ("value-set-not-json", lambda a: a.set("k", {1, 2}), InvalidValueError),
    ("value-too-large", lambda a: a.set("k", "x" * 2000), InvalidValueError),
    ("unknown-strategy", lambda a: a.set("k", 1, strategy="write_sideways"), UnknownNameError),
    ("unknown-ttl-preset", lambda a: a.set("k", 1, ttl="forever"), UnknownNameError),
    ("zero-ttl", lambda a: a.set("k", 1, ttl=0), InvalidValueError),
    ("negative-ttl", lambda a: a.set("k", 1, ttl=-5), InvalidValueError),
    ("bool-ttl", lambda a: a.set("k", 1, ttl=True), InvalidValueError),
    ("tags-as-string", lambda a: a.set("k", 1, tags="t"), InvalidValueError),
    ("empty-tag", lambda a: a.set("k", 1, tags=[""]), InvalidValueError),
    ("bad-dependency", lambda a: a.set("k", 1, dependencies=[""]), InvalidKeyError),
    ("set-many-one-bad-key", lambda a: a.set_many({"k": 2, "ok": 1, "": 3}), InvalidKeyError),
    ("set-many-one-bad-value", lambda a: a.set_many({"k": 2, "x": object()}), InvalidValueError),
    ("set-many-bad-strategy", lambda a: a.set_many({"k": 2}, strategy="nope"), UnknownNameError),
    ("get-empty-key", lambda a: a.get(""), InvalidKeyError),
    ("get-many-bad-key", lambda a: a.get_many(["k", "a\tb"]), InvalidKeyError),
    ("delete-empty-key", lambda a: a.delete(""), InvalidKeyError),
    ("tags-empty-name", lambda a: a.invalidate_by_tags([""]), InvalidValueError),
    ("invalidate-bad-pattern", lambda a: a.invalidate(pattern="", tags=["t"]), InvalidKeyError),
    ("invalidate-bad-tags", lambda a: a.invalidate(pattern="k", tags="t"), InvalidValueError),
    ("warm-up-bad-key", lambda a: a.warm_up(["ok", ""]), InvalidKeyError),
    ("warm-up-bad-strategy", lambda a: a.warm_up(["k"], "eventually"), UnknownNameError),
    ("warm-up-too-many", lambda a: a.warm_up([f"k{i}" for i in range(6)]), InvalidValueError),
]


@pytest.mark.parametrize(
    ("call", "error"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_input_raises_and_changes_nothing(
    agent: CachingAgent,
    call: Callable[[CachingAgent], Awaitable[Any]],
    error: type[Exception],
) -> None:
    await agent.set("k", "old", tags=["t"])
    before = await counters(agent)
    with pytest.raises(error):
        await call(agent)
    assert await counters(agent) == before
    assert agent.l1.get("k") == b'"old"'
    assert "ok" not in agent.l1


async def test_a_value_larger_than_l1_is_refused_without_l2(make_agent, base_config) -> None:
    agent = await make_agent(
        base_config(cache_tiers={"l1": {"max_size_mb": 0.001}})  # about 1 KB
    )
    await agent.set("k", "old")
    with pytest.raises(InvalidValueError, match="larger than the whole L1"):
        await agent.set("k", "x" * 2000)
    assert await agent.get("k") == "old"


# -- statistics ----------------------------------------------------------------------------


async def test_stats_are_exact_after_a_known_sequence(agent: CachingAgent) -> None:
    await agent.set("a", 1)
    await agent.set("b", 2)
    await agent.set_many({"c": 3, "d": 4})
    assert await agent.get("a") == 1  # hit
    assert await agent.get("b") == 2  # hit
    assert await agent.get("x") is None  # miss
    assert await agent.delete("a") is True
    assert await agent.delete("a") is False
    assert await agent.get("a") is None  # miss
    assert await agent.get_many(["c", "d", "y"]) == {"c": 3, "d": 4, "y": None}  # 2 hits, 1 miss
    assert await agent.get_or_compute("z", lambda: 9) == 9  # miss, then stored
    assert await agent.get_or_compute("z", lambda: 0) == 9  # hit
    stats = await agent.fetch_stats()
    assert stats["hits"] == 5
    assert stats["misses"] == 4
    assert stats["sets"] == 5
    assert stats["deletes"] == 2
    assert stats["hit_rate"] == round(5 / 9, 4)
    assert stats["hits_by_tier"] == {"l1": 5, "l2": 0, "loader": 0}
    assert stats["l1_entries"] == 4
    assert stats["l1_size_bytes"] == agent.l1.size_bytes > 0
    assert stats["l2_size_keys"] == 0
    assert stats["tiers"] == ["l1"]
    assert stats["avg_latency_ms"] >= 0


async def test_untimed_l1_hits_count_in_the_lowest_latency_bucket(agent: CachingAgent) -> None:
    await agent.set("a", 1)
    timed_before = agent.stats.latency.total
    for _ in range(98):
        assert await agent.get("a") == 1
    assert await agent.lookup("a") == (b"1", "l1")
    assert agent.stats.latency.total == timed_before  # L1 hits are not timed...
    counts = agent.stats.latency_counts()
    assert counts[0] >= 99  # ...but are observations of the lowest bucket
    assert sum(counts) == timed_before + 99
    stats = await agent.fetch_stats()
    assert stats["hits_by_tier"]["l1"] == 99
    assert stats["p50_latency_ms"] is not None and stats["p50_latency_ms"] <= 0.025


async def test_hit_rate_is_zero_before_any_lookup(agent: CachingAgent) -> None:
    stats = await agent.fetch_stats()
    assert stats["hit_rate"] == 0.0
    assert stats["hits"] == stats["misses"] == stats["sets"] == stats["deletes"] == 0


# -- warm-up -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
async def test_warm_up_counts_what_is_cached(agent: CachingAgent, mode: str) -> None:
    await agent.set_many({"a": 1, "b": 2})
    assert await agent.warm_up(["a", "b", "c", "a"], mode) == 2
    assert await agent.warm_up([], mode) == 0
    report = await agent.warm_up_report(["a", "c"], mode)
    assert (report.warmed, report.requested) == (1, 2)
    assert list(report.failures) == ["c"]
    assert agent.stats.hits == agent.stats.misses == 0  # warm-up lookups are not counted


# -- expired entries -----------------------------------------------------------------------


async def test_expired_keys_are_not_counted_as_removed(agent: CachingAgent, clock) -> None:
    await agent.set("e:1", 1, ttl=1)
    await agent.set("e:2", 1, ttl=1)
    clock.advance(2)
    assert await agent.delete("e:1") is False
    assert await agent.invalidate_pattern("e:*") == 0


async def test_l1_holds_about_what_it_accounts_for(make_agent, base_config) -> None:
    # orjson over-allocates what it returns (KBs for a short value); stored values are
    # right-sized, so the bytes L1 accounts for are the bytes it holds.
    import tracemalloc

    agent = await make_agent(base_config())
    values = [{"user": i, "items": ["w"] * (i % 50)} for i in range(2000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, value in enumerate(values):
            await agent.set(f"user:{i}:path", value)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(agent.l1) == 2000
    assert held < 1.3 * agent.l1.size_bytes, (held, agent.l1.size_bytes)


async def test_the_agent_is_what_plugins_are_handed(agent: CachingAgent) -> None:
    view: AgentView = agent  # what hooks and recorders type against (mypy checks this line)
    assert isinstance(view, AgentView)
