"""Logs operators can use: the access log (``monitoring.access_log``) and the lines of long
operations (a pattern invalidation sweeping L2, a large warm-up), against a real engine."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cache_core import progress
from cache_server import create_app
from cache_server.logs import RequestIdFilter

SWEPT = 3000


def config_for(engine: Any, prefix: str, **monitoring: Any) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 4}, "l2": {"type": "redis"}},
        "monitoring": {"l2_count_interval": 0, **monitoring},
        "limits": {"max_warmup_keys": 1000},
    }


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == logger]


@pytest.fixture(autouse=True)
def request_ids(caplog: pytest.LogCaptureFixture) -> None:
    """The server's filter on the capturing handler: records get their request id."""
    caplog.handler.addFilter(RequestIdFilter())


async def test_the_access_log_has_a_line_per_request_naming_its_route(
    aiohttp_client: Any, engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(engine, prefix, access_log=True)
    client = await aiohttp_client(create_app(config, env={}))
    caplog.set_level(logging.INFO, logger="cache_server.access")
    await client.post("/cache", json={"key": "user:42:profile", "value": 1})
    await client.get("/cache/user:42:profile", headers={"X-Request-ID": "req-7"})
    await client.get("/nowhere")
    write, read, unmatched = lines(caplog, "cache_server.access")
    assert (write.msg, vars(write)["route"], vars(write)["status"]) == (
        "http_request",
        "/cache",
        200,
    )
    fields = vars(read)
    assert (fields["method"], fields["route"], fields["status"]) == ("GET", "/cache/{key}", 200)
    assert fields["request_id"] == "req-7"
    assert isinstance(fields["duration_ms"], float) and fields["duration_ms"] >= 0
    assert (vars(unmatched)["route"], vars(unmatched)["status"]) == ("unmatched", 404)
    # The raw key (a user id) is in no field.
    assert not any("42" in str(value) for value in (fields["route"], fields["remote"]))


async def test_no_access_log_unless_asked_for(
    aiohttp_client: Any, engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    caplog.set_level(logging.INFO, logger="cache_server.access")
    assert (await client.get("/cache/k")).status == 200
    assert lines(caplog, "cache_server.access") == []


@pytest.fixture
def quick_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress lines at once and every millisecond, so an operation of a test's size
    (tens of milliseconds) shows every kind of line."""
    monkeypatch.setattr(progress, "LOG_AFTER", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.001)


async def test_a_long_pattern_invalidation_logs_start_progress_and_end(
    aiohttp_client: Any,
    engine: Any,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    quick_progress: None,
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    items = {f"bulk:{i}": i for i in range(SWEPT)}
    for start in range(0, SWEPT, 500):
        chunk = dict(list(items.items())[start : start + 500])
        resp = await client.post("/cache/batch-set", json={"items": chunk})
        assert resp.status == 200, await resp.text()
    caplog.set_level(logging.INFO, logger="cache_core.progress")
    resp = await client.post("/invalidate", json={"pattern": "bulk:*"})
    assert (await resp.json())["invalidated_count"] == SWEPT
    records = lines(caplog, "cache_core.progress")
    events = [r.msg for r in records]
    assert events[0] == "long_operation_started"
    assert "long_operation_progress" in events
    assert events[-1] == "long_operation_finished"
    assert {vars(r)["operation"] for r in records} == {"pattern_invalidation"}
    assert {vars(r)["pattern"] for r in records} == {"bulk:*"}
    done = [vars(r)["done"] for r in records]
    assert done == sorted(done) and done[-1] == SWEPT  # what L2 swept, as it went
    assert vars(records[-1])["outcome"] == "ok"
    assert all(r.request_id is not None for r in records)  # type: ignore[attr-defined]


async def test_a_large_warm_up_logs_how_far_it_got(
    aiohttp_client: Any,
    engine: Any,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    quick_progress: None,
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    keys = [f"w:{i}" for i in range(1000)]
    caplog.set_level(logging.INFO, logger="cache_core.progress")
    body = await (await client.post("/warm-up", json={"keys": keys})).json()
    assert body["warmed_count"] == 0  # nothing there to warm: every key is a failure
    records = lines(caplog, "cache_core.progress")
    assert [r.msg for r in records][-1] == "long_operation_finished"
    last = vars(records[-1])
    assert (last["operation"], last["done"], last["total"]) == ("warm_up", 1000, 1000)


async def test_a_quick_operation_logs_nothing(
    aiohttp_client: Any, engine: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(config_for(engine, prefix), env={}))
    caplog.set_level(logging.INFO, logger="cache_core.progress")
    await client.post("/cache", json={"key": "q:1", "value": 1})
    assert (await (await client.post("/invalidate", json={"pattern": "q:*"})).json())[
        "invalidated_count"
    ] == 1
    assert lines(caplog, "cache_core.progress") == []
