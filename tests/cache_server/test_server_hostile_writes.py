"""Writes a client can make hostile, against a real engine: TTLs the engine cannot take,
too many tags or dependencies, write-back values too large to buffer. Each is refused up
front with a 4xx that changes nothing, never counted as an L2 failure, and never stops
other clients' writes from landing."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from cache_core.errors import InvalidValueError
from cache_core.strategies import WriteBack
from cache_core.tiers.base import RemoteTier
from cache_server.keys import AGENT

HUGE_TTLS = [1e20, 2.0**63, 1e308, 315_360_001]


def l2_config(engine: Any, prefix: str, config_factory: Any, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = config_factory(
        redis={"url": engine.url, "key_prefix": prefix},
        cache_tiers={"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
        strategies={"default": "write_through", "write_back": {"flush_interval": 0.1}},
    )
    cfg.update(extra)
    return cfg


@pytest.fixture
async def l2_client(engine: Any, prefix: str, config_factory: Any, make_client: Any) -> Any:
    return await make_client(l2_config(engine, prefix, config_factory))


def engine_keys(engine: Any, prefix: str) -> list[bytes]:
    # SCAN may return a name twice (while the engine rehashes).
    return sorted(set(engine.client.scan_iter(match=f"{prefix}*", count=1000)))


@pytest.mark.parametrize("ttl", HUGE_TTLS)
async def test_a_ttl_beyond_max_ttl_is_a_400_that_changes_nothing(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str, check_error: Any, ttl: float
) -> None:
    for strategy in ("write_through", "write_back", "write_around"):
        resp = await l2_client.post(
            "/cache/batch-set", json={"items": {"p": 1}, "ttl": ttl, "strategy": strategy}
        )
        error = await check_error(resp)
        assert resp.status == 400
        assert "max_ttl" in error["message"]
        resp = await l2_client.post("/cache", json={"key": "q", "value": 1, "ttl": ttl})
        assert resp.status == 400
    agent = l2_client.app[AGENT]
    assert agent.write_back_pending() == 0
    assert engine_keys(engine, prefix) == []
    assert (await (await l2_client.get("/cache/p")).json())["hit"] is False


async def test_a_huge_write_back_ttl_never_poisons_the_buffer(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str
) -> None:
    """The issue's repro: before, every later write_back write got 200 and none landed."""
    resp = await l2_client.post(
        "/cache/batch-set", json={"items": {"p": 1}, "ttl": 1e308, "strategy": "write_back"}
    )
    assert resp.status == 400
    for i in range(20):
        resp = await l2_client.post(
            "/cache", json={"key": f"wb{i}", "value": i, "strategy": "write_back"}
        )
        assert resp.status == 200
    deadline = time.monotonic() + 5
    while len(engine_keys(engine, prefix)) < 20:
        assert time.monotonic() < deadline, "write_back writes never reached L2"
        await asyncio.sleep(0.05)
    health = await (await l2_client.get("/health")).json()
    assert health["tiers"]["l2"]["breaker"]["state"] == "closed"


async def test_request_errors_never_open_the_breaker(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str
) -> None:
    agent = l2_client.app[AGENT]
    threshold = agent.breaker.failure_threshold
    for _ in range(threshold * 3):
        for ttl in HUGE_TTLS:
            resp = await l2_client.post("/cache", json={"key": "k", "value": 1, "ttl": ttl})
            assert resp.status == 400, await resp.text()
    assert agent.breaker.state == "closed"
    assert agent.breaker.failures == 0
    resp = await l2_client.post("/cache", json={"key": "k", "value": 2})
    assert resp.status == 200
    assert (await (await l2_client.get("/cache/k")).json())["value"] == 2


async def test_a_value_the_client_library_refuses_is_a_400_not_an_l2_failure(
    l2_client: TestClient[Any, Any],
) -> None:
    """Past the edge's checks (here: a TTL smuggled straight to the tier), the command the
    client library cannot build is the request's fault: a 400, no breaker failure, and the
    half-open probe slot is given back."""
    agent = l2_client.app[AGENT]
    assert agent.guarded_l2 is not None
    for _ in range(agent.breaker.failure_threshold * 2):
        with pytest.raises(InvalidValueError, match="request's values"):
            await agent.guarded_l2.set("x", b"1", math.inf)
    assert agent.breaker.state == "closed"
    assert agent.breaker.failures == 0


async def test_a_flush_drops_the_entry_l2_refuses_and_lands_the_others(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str
) -> None:
    """Should an entry L2 cannot take reach the buffer anyway, the flush drops it (logged)
    and lands the rest, instead of retrying the whole batch forever."""
    agent = l2_client.app[AGENT]
    write_back = agent.strategies["write_back"]
    assert isinstance(write_back, WriteBack)
    await write_back.write(
        [("good1", b"1", 60.0, True), ("bad", b"2", math.inf, True), ("good2", b"3", None, True)]
    )
    stamp = write_back._buffer["bad"][3]
    write_back._buffer["bad"] = (b"2", time.monotonic() + 1e300, True, stamp)  # past any check
    await write_back.flush()
    assert engine.client.get(f"{prefix}good1") is not None
    assert engine.client.get(f"{prefix}good2") is not None
    assert engine.client.get(f"{prefix}bad") is None
    assert agent.write_back_pending() == 0
    assert write_back.dropped == 1
    assert agent.breaker.state == "closed"
    await write_back.write([("later", b"4", 60.0, True)])
    assert await write_back.flush() == 1
    assert engine.client.get(f"{prefix}later") is not None


@pytest.mark.parametrize("field", ["tags", "dependencies"])
async def test_more_than_max_tags_or_dependencies_is_refused_up_front(
    engine: Any,
    prefix: str,
    config_factory: Any,
    make_client: Any,
    check_error: Any,
    field: str,
) -> None:
    limits = {**config_factory()["limits"], "max_tags": 8, "max_dependencies": 8}
    client = await make_client(l2_config(engine, prefix, config_factory, limits=limits))
    names = [f"n{i}" for i in range(9)]
    resp = await client.post("/cache", json={"key": "k", "value": 1, field: names})
    error = await check_error(resp)
    assert f"max_{field}" in error["message"]
    assert engine_keys(engine, prefix) == []  # no entry, no index key
    resp = await client.post("/cache", json={"key": "k", "value": 1, field: names[:8]})
    assert resp.status == 200
    if field == "tags":
        resp = await client.post("/cache/batch-set", json={"items": {"a": 1}, "tags": names})
        assert (await check_error(resp))["code"] == "invalid_value"


async def test_write_back_is_bounded_in_bytes_while_l2_is_away(
    engine: Any, prefix: str, config_factory: Any, make_client: Any, check_error: Any
) -> None:
    limits = {**config_factory()["limits"], "max_value_bytes": 256 * 1024}
    cfg = l2_config(engine, prefix, config_factory, limits=limits)
    cfg["limits"]["max_request_bytes"] = 1024 * 1024
    cfg["strategies"]["write_back"] = {"flush_interval": 0.1, "max_pending_mb": 1}
    client = await make_client(cfg)
    agent = client.app[AGENT]
    l2: RemoteTier | None = agent.l2
    assert l2 is not None
    value = "x" * (200 * 1024)
    for _ in range(agent.breaker.failure_threshold):  # open: flushes fail at once
        agent.breaker.failure("test: L2 away")
    agent.breaker.wait = agent.breaker.reset_timeout = 60.0
    accepted = 0
    for i in range(10):
        resp = await client.post(
            "/cache", json={"key": f"big{i}", "value": value, "strategy": "write_back"}
        )
        if resp.status == 200:
            accepted += 1
            continue
        assert resp.status == 503
        assert "max_pending_mb" in (await resp.json())["error"]["message"]
        break
    assert 1 <= accepted <= 5  # 1 MiB of 200 KiB values
    pending = agent.strategies["write_back"].describe()
    assert int(str(pending["pending_bytes"])) <= 1024 * 1024
    assert agent.write_back_pending() == accepted


async def test_a_tag_longer_than_a_key_is_refused(
    l2_client: TestClient[Any, Any], engine: Any, prefix: str, check_error: Any
) -> None:
    """A tag names an index key; before, a 1 MB tag made a 1 MB key name in the engine."""
    longest = l2_client.app[AGENT].config.limits.max_key_length
    resp = await l2_client.post("/cache", json={"key": "k", "value": 1, "tags": ["y" * 1000]})
    assert "max_key_length" in (await check_error(resp))["message"]
    resp = await l2_client.post("/invalidate", json={"tags": ["y" * (longest + 1)]})
    assert (await check_error(resp))["code"] == "invalid_value"
    assert engine_keys(engine, prefix) == []
    resp = await l2_client.post("/cache", json={"key": "k", "value": 1, "tags": ["y" * longest]})
    assert resp.status == 200
