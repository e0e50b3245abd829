"""The product description's Python examples, run as written on the shipped config.yaml.

Each example is the text of its code block in the description ("Cache Tiers > Multi-Tier
Lookup", "Cache Strategies", "Invalidation", "Compression", "Monitoring"), copied
verbatim and run inside an async function with ``agent`` and the names it uses in scope:
only imports are added, and ``large_dataset`` and ``e``, which the description leaves to
the reader, are defined here. The agent is built as the README's "The Python API" shows,
``CachingAgent.from_config("config.yaml")``, from a copy of the shipped file in a
directory of the test's own (so the embedded engine keeps its data there). Each test checks
what the example's comments and surrounding text promise; a call the description makes
without ``await`` must do what it says and leave no "coroutine was never awaited" behind.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import shutil
import textwrap
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cache_core import CacheStrategy, CachingAgent
from cache_core.frames import HEADER_SIZE, is_tombstone
from cache_plugins_invalidation import EventTrigger

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

# -- the description's examples, verbatim -----------------------------------------------------

MULTI_TIER_LOOKUP = """\
# Automatic cascade
value = await agent.get("user:123:profile")
# 1. Check L1 → HIT? Return
# 2. Check L2 → HIT? Promote to L1, return
# 3. MISS → Return None
"""

WRITE_THROUGH = """\
await agent.set(
    "user:123:profile",
    {"name": "Alice"},
    strategy=CacheStrategy.WRITE_THROUGH
)
"""

WRITE_BACK = """\
await agent.set(
    "analytics:event:123",
    {"type": "click"},
    strategy=CacheStrategy.WRITE_BACK
)
"""

WRITE_AROUND = """\
await agent.set(
    "import:batch:456",
    large_dataset,
    strategy=CacheStrategy.WRITE_AROUND
)
"""

TTL = """\
await agent.set("key", "value", ttl=3600)
"""

EVENT_BASED = """\
# Register event subscription
agent.invalidation_manager.register_event_subscription(
    EventTrigger.USER_PROFILE_UPDATE,
    "user:123:profile"
)

# Invalidate on event
await agent.invalidate_by_event(EventTrigger.USER_PROFILE_UPDATE)
"""

DEPENDENCY = """\
# Register dependency
agent.invalidation_manager.register_dependency(
    "content:rec:123",
    "user:123:profile"
)

# Invalidate source (cascades to dependents)
await agent.invalidate_pattern("*user:123:profile*")
"""

PATTERN_AND_TAGS = """\
# Invalidate all user profiles
await agent.invalidate_pattern("*user:*:profile*")

# Invalidate by tags
await agent.invalidate_by_tags(["user", "profile"])
"""

COMPRESSION = """\
# Small data: No compression
await agent.set("key1", "small")  # Not compressed

# Large data: Automatic compression
await agent.set("key2", "x" * 2000)  # Compressed with gzip

# Transparent decompression
value = await agent.get("key2")  # Automatically decompressed
"""

STATISTICS = """\
stats = agent.get_stats()
# {
#   "hits": 1523,
#   "misses": 234,
#   "sets": 567,
#   "deletes": 45,
#   "hit_rate": 0.867,
#   "avg_latency_ms": 2.3,
#   "l1_size_bytes": 10485760,
#   "l2_size_keys": 1200
# }
"""

LOGGING = """\
logger.info("cache_hit", key="user:123", tier="l1")
logger.warning("cache_miss", key="user:456")
logger.error("cache_error", error=str(e))
"""


RAW_CODEC_ID = 0
GZIP_CODEC_ID = 1
CODEC_BYTE = 2  # magic, version, codec id: see cache_core.frames
WRITE_BACK_DEADLINE = 15.0  # flush_interval is 5 s in the shipped config


# -- running them -------------------------------------------------------------------------------


async def run_example(example: str, **names: Any) -> dict[str, Any]:
    """Run ``example`` as the body of an async function with ``names`` (and the imports it
    needs) in scope; its local variables. Fails on a coroutine left unawaited, whether the
    example dropped it (the warning) or kept it in a variable."""
    source = "async def example():\n" + textwrap.indent(example, "    ") + "    return locals()\n"
    namespace: dict[str, Any] = {
        "CacheStrategy": CacheStrategy,
        "EventTrigger": EventTrigger,
        **names,
    }
    exec(compile(source, "<description example>", "exec"), namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result: dict[str, Any] = await namespace["example"]()
        gc.collect()
    never_awaited = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    kept = {name: value for name, value in result.items() if asyncio.iscoroutine(value)}
    for coroutine in kept.values():
        coroutine.close()  # reported here, not as a warning in some later test
    assert not never_awaited, never_awaited
    assert not kept, f"the example's {sorted(kept)} is a coroutine, not a value"
    return result


@pytest.fixture
async def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[CachingAgent]:
    """The agent of the shipped config.yaml, built as the README shows, in a directory of
    this test's own (the config's relative redis.data_dir lands there). ``env={}``: none of
    the caller's REDIS_* / CACHE_* variables redirect it."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    monkeypatch.chdir(tmp_path)
    async with CachingAgent.from_config("config.yaml", env={}) as built:
        yield built


def redis_tier(agent: CachingAgent) -> Any:
    """The shipped config's L2, the Redis tier: its client reads what is stored raw."""
    tier: Any = agent.l2
    assert tier is not None and tier.PLUGIN_NAME == "redis", tier
    return tier


async def l2_frame(agent: CachingAgent, key: str) -> bytes | None:
    tier = redis_tier(agent)
    frame: bytes | None = await tier.client.get(tier.prefix + key)
    return frame


async def in_l2(agent: CachingAgent, key: str) -> bool:
    frame = await l2_frame(agent, key)
    return frame is not None and not is_tombstone(frame)  # a delete's tombstone is no entry


def in_l1(agent: CachingAgent, key: str) -> bool:
    return agent.l1.get(key) is not None


# -- Cache Tiers > Multi-Tier Lookup ------------------------------------------------------------


async def test_multi_tier_lookup_cascades_l1_l2_none_and_promotes(agent: CachingAgent) -> None:
    await agent.set("user:123:profile", {"name": "Alice"})

    # 1. in L1: answered there
    l1_hits, l2_hits = agent.stats.hits_l1, agent.stats.hits_l2
    found = await run_example(MULTI_TIER_LOOKUP, agent=agent)
    assert found["value"] == {"name": "Alice"}
    assert (agent.stats.hits_l1, agent.stats.hits_l2) == (l1_hits + 1, l2_hits)

    # 2. only in L2: answered from there and promoted to L1
    agent.l1.delete("user:123:profile")
    assert not in_l1(agent, "user:123:profile")
    found = await run_example(MULTI_TIER_LOOKUP, agent=agent)
    assert found["value"] == {"name": "Alice"}
    assert agent.stats.hits_l2 == l2_hits + 1
    assert in_l1(agent, "user:123:profile")

    # 3. nowhere: None
    assert await agent.delete("user:123:profile")
    found = await run_example(MULTI_TIER_LOOKUP, agent=agent)
    assert found["value"] is None


# -- Cache Strategies --------------------------------------------------------------------------


async def test_write_through_lands_in_l1_and_l2(agent: CachingAgent) -> None:
    await run_example(WRITE_THROUGH, agent=agent)
    assert in_l1(agent, "user:123:profile")
    assert await in_l2(agent, "user:123:profile")
    assert await agent.get("user:123:profile") == {"name": "Alice"}


async def test_write_back_lands_in_l1_and_reaches_l2_by_itself(agent: CachingAgent) -> None:
    await run_example(WRITE_BACK, agent=agent)
    assert in_l1(agent, "analytics:event:123")
    assert not await in_l2(agent, "analytics:event:123")  # buffered
    # "Automatic background flushing ensures data reaches L2."
    deadline = time.monotonic() + WRITE_BACK_DEADLINE
    while not await in_l2(agent, "analytics:event:123"):
        assert time.monotonic() < deadline, "the write-back buffer never reached L2"
        await asyncio.sleep(0.1)
    agent.l1.delete("analytics:event:123")
    assert await agent.get("analytics:event:123") == {"type": "click"}


async def test_write_around_lands_in_l2_only(agent: CachingAgent) -> None:
    large_dataset = [{"row": i, "text": f"imported row {i}"} for i in range(500)]
    await run_example(WRITE_AROUND, agent=agent, large_dataset=large_dataset)
    assert not in_l1(agent, "import:batch:456")
    assert await in_l2(agent, "import:batch:456")
    assert await agent.get("import:batch:456") == large_dataset


# -- Invalidation ------------------------------------------------------------------------------


async def test_ttl_example_sets_the_ttl(agent: CachingAgent) -> None:
    await run_example(TTL, agent=agent)
    tier = redis_tier(agent)
    left_ms = await tier.client.pttl(tier.prefix + "key")
    assert 3_590_000 < left_ms <= 3_600_000
    assert await agent.get("key") == "value"


async def test_event_subscription_and_event_without_context(agent: CachingAgent) -> None:
    await agent.set("user:123:profile", {"name": "Alice"})
    await agent.set("content:789", {"title": "Algebra"})
    await run_example(EVENT_BASED, agent=agent)
    assert await agent.get("user:123:profile") is None
    assert not await in_l2(agent, "user:123:profile")
    assert await agent.get("content:789") == {"title": "Algebra"}
    # The shipped config's own user_profile_update target (user:{user_id}:*) reaches the
    # key too, so the subscription is checked where it is kept.
    assert agent.guarded_index is not None
    subscribed = await agent.guarded_index.subscriptions(EventTrigger.USER_PROFILE_UPDATE)
    assert "user:123:profile" in subscribed


async def test_registered_dependency_cascades_from_a_pattern(agent: CachingAgent) -> None:
    await agent.set("user:123:profile", {"name": "Alice"})
    await agent.set("content:rec:123", [1, 2, 3])
    await agent.set("user:456:profile", {"name": "Bob"})
    await run_example(DEPENDENCY, agent=agent)
    assert await agent.get("user:123:profile") is None
    assert await agent.get("content:rec:123") is None  # by the dependency alone
    assert not await in_l2(agent, "content:rec:123")
    assert await agent.get("user:456:profile") == {"name": "Bob"}


async def test_pattern_and_tags(agent: CachingAgent) -> None:
    await agent.set("user:1:profile", {"name": "Alice"})
    await agent.set("user:2:profile", {"name": "Bob"})
    await agent.set("user:1:settings", {"dark": True})
    await agent.set("note:1", 1, tags=["user"])
    await agent.set("note:2", 2, tags=["profile"])
    await agent.set("note:3", 3, tags=["other"])
    await run_example(PATTERN_AND_TAGS, agent=agent)
    got = await agent.get_many(
        ["user:1:profile", "user:2:profile", "user:1:settings", "note:1", "note:2", "note:3"]
    )
    assert got == {
        "user:1:profile": None,
        "user:2:profile": None,
        "user:1:settings": {"dark": True},
        "note:1": None,
        "note:2": None,
        "note:3": 3,
    }


# -- Compression -------------------------------------------------------------------------------


async def test_compression_small_raw_large_gzip_read_back(agent: CachingAgent) -> None:
    found = await run_example(COMPRESSION, agent=agent)
    assert found["value"] == "x" * 2000
    small = await l2_frame(agent, "key1")
    assert small is not None
    assert small[CODEC_BYTE] == RAW_CODEC_ID
    assert small[HEADER_SIZE:] == b'"small"'
    large = await l2_frame(agent, "key2")
    assert large is not None
    assert large[CODEC_BYTE] == GZIP_CODEC_ID
    assert len(large) < 2000
    # decompressed from L2 too, not only answered from L1's plain copy
    agent.l1.delete("key2")
    assert await agent.get("key2") == "x" * 2000


# -- Monitoring --------------------------------------------------------------------------------


async def test_get_stats_without_await_answers_the_documented_fields(
    agent: CachingAgent, seed_stats_fields: dict[str, type]
) -> None:
    await agent.set("a", 1)
    await agent.set("b", 2)
    assert await agent.get("a") == 1
    assert await agent.get("missing") is None
    assert await agent.delete("b")
    found = await run_example(STATISTICS, agent=agent)
    stats = found["stats"]
    assert isinstance(stats, dict), stats
    missing = sorted(set(seed_stats_fields) - set(stats))
    assert not missing, f"missing {missing} in {stats}"
    for name, kind in seed_stats_fields.items():
        assert isinstance(stats[name], kind) and not isinstance(stats[name], bool), (
            f"{name} is {stats[name]!r}, expected {kind.__name__}"
        )
    assert (stats["hits"], stats["misses"], stats["sets"], stats["deletes"]) == (1, 1, 2, 1)
    assert stats["hit_rate"] == pytest.approx(0.5)
    assert stats["l1_size_bytes"] > 0
    assert stats["l2_size_keys"] >= 0


def _field(record: logging.LogRecord, name: str) -> Any:
    return getattr(record, name, None)


async def test_logging_example_logs_events_with_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from cache_core.logs import logger  # the structured logger the example uses

    e = RuntimeError("L2 went away")
    with caplog.at_level(logging.DEBUG):
        await run_example(LOGGING, logger=logger, e=e)
    events = {record.getMessage(): record for record in caplog.records}
    assert {"cache_hit", "cache_miss", "cache_error"} <= set(events), caplog.text
    hit, miss, error = events["cache_hit"], events["cache_miss"], events["cache_error"]
    assert (hit.levelno, _field(hit, "key"), _field(hit, "tier")) == (
        logging.INFO,
        "user:123",
        "l1",
    )
    assert (miss.levelno, _field(miss, "key")) == (logging.WARNING, "user:456")
    assert (error.levelno, _field(error, "error")) == (logging.ERROR, "L2 went away")
