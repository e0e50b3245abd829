"""L2 dying and coming back, seen over HTTP against a real engine (SIGKILL, restart on the
same port): L1 answers what it holds from the first request after the failure, /stats
still answers, and the service is back within about a second of the engine."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

from aiohttp.test_utils import TestClient

from cache_server.keys import AGENT


def fault_config(engine: Any, prefix: str, config_factory: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = config_factory(
        redis={
            "url": engine.url,
            "key_prefix": prefix,
            "socket_timeout": 1,
            "connect_timeout": 0.5,
            "retry_attempts": 1,
        },
        cache_tiers={"l1": {"max_size_mb": 4, "ttl": 300}, "l2": {"type": "redis"}},
        circuit_breaker={"failure_threshold": 3, "operation_timeout": 0.5},
    )
    return cfg


async def statuses(client: TestClient[Any, Any], path: str, seconds: float) -> list[int]:
    """Every status GET ``path`` got, 8 requests at a time, for ``seconds``."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < deadline:
            resp = await client.get(path)
            seen.append(resp.status)
            await resp.read()

    await asyncio.gather(*(one() for _ in range(8)))
    return seen


async def test_l1_answers_from_the_first_request_after_l2_dies(
    private_engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    client = await make_client(fault_config(private_engine, prefix, config_factory))
    agent = client.app[AGENT]
    deadline = time.monotonic() + 5
    while agent.health()["status"] != "ok":  # notices flowing: L1 serves
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert (await client.post("/cache", json={"key": "hot", "value": 1})).status == 200
    private_engine.kill()
    seen = await statuses(client, "/cache/hot", 1.0)
    assert seen and set(seen) == {200}, {s: seen.count(s) for s in set(seen)}
    body = await (await client.get("/cache/hot")).json()
    assert (body["value"], body["tier"]) == (1, "l1")
    # The lost-notice rule still holds: once L2 is back, L1 is emptied before it serves.
    private_engine.start()
    deadline = time.monotonic() + 10
    while agent.health()["status"] != "ok":
        assert time.monotonic() < deadline, agent.health()
        await client.get("/cache/probe")
        await asyncio.sleep(0.05)
    body = await (await client.get("/cache/hot")).json()
    assert body["hit"] is False  # the engine lost its data; L1's copy was dropped


async def test_stats_answers_with_l2_down(
    private_engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    client = await make_client(fault_config(private_engine, prefix, config_factory))
    await client.post("/cache", json={"key": "k", "value": 1})
    private_engine.kill()
    for _ in range(5):  # before and after the breaker opens
        start = time.monotonic()
        resp = await client.get("/stats")
        assert resp.status == 200, await resp.text()
        assert time.monotonic() - start < 2
        body = await resp.json()
        assert body["l2_size_keys"] is None
        assert body["l2_error"]
        assert body["sets"] == 1
    private_engine.start()


async def test_service_recovers_within_a_second_of_l2(
    private_engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    client = await make_client(fault_config(private_engine, prefix, config_factory))
    agent = client.app[AGENT]
    private_engine.kill()
    while agent.breaker.state != "open":
        assert (await client.get("/cache/cold")).status == 503
    # Down long enough for several failed probes, far shorter than the old fixed 5 s wait.
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        await client.get("/cache/cold")
        await asyncio.sleep(0.05)
    private_engine.start()  # returns once the engine answers PING
    back = time.monotonic()
    while (await client.get("/cache/cold")).status != 200:
        assert time.monotonic() - back < 10
        await asyncio.sleep(0.02)
    lag = time.monotonic() - back
    assert lag < 1.6, f"the service came back {lag:.2f} s after L2"
    assert agent.breaker.state == "closed"


async def test_every_call_answers_within_the_budget_while_the_engine_is_stopped(
    private_engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    """SIGSTOP: connections stay open and nothing answers. Before, DELETE, /invalidate and
    /stats each waited out the socket timeout and its retries (10 s)."""
    cfg = fault_config(private_engine, prefix, config_factory)
    cfg["redis"]["socket_timeout"] = 5
    cfg["redis"]["retry_attempts"] = 3
    client = await make_client(cfg)
    await client.post("/cache", json={"key": "a", "value": 1, "tags": ["t"]})
    await client.post("/cache", json={"key": "b", "value": 2, "dependencies": ["a"]})
    private_engine.process.send_signal(signal.SIGSTOP)
    try:
        calls = [
            ("DELETE", "/cache/a", None),
            ("POST", "/invalidate", {"pattern": "a*"}),
            ("POST", "/invalidate", {"tags": ["t"]}),
            ("GET", "/stats", None),
            ("GET", "/cache/cold", None),
            ("POST", "/cache", {"key": "c", "value": 3}),
        ]
        for method, path, body in calls:
            start = time.monotonic()
            resp = await client.request(method, path, json=body)
            took = time.monotonic() - start
            assert resp.status in (200, 503), (path, resp.status, await resp.text())
            assert took < 0.5 + 1.0, f"{method} {path} took {took:.2f} s"
    finally:
        private_engine.process.send_signal(signal.SIGCONT)


async def test_batch_get_answers_what_l1_holds_when_l2_dies(
    private_engine: Any, prefix: str, config_factory: Any, make_client: Any
) -> None:
    """Before, one key L1 did not hold made the whole batch a 503."""
    client = await make_client(fault_config(private_engine, prefix, config_factory))
    await client.post("/cache", json={"key": "hot", "value": 1})
    await client.post("/cache", json={"key": "cold", "value": 2, "strategy": "write_around"})
    private_engine.kill()
    try:
        resp = await client.post("/cache/batch-get", json={"keys": ["hot", "cold"]})
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["results"] == {"hot": 1, "cold": None}
        assert list(body["errors"]) == ["cold"]
        assert body["errors"]["cold"]["code"] == "tier_unavailable"
        # Nothing to answer at all: the batch fails as one lookup would.
        resp = await client.post("/cache/batch-get", json={"keys": ["cold"]})
        assert resp.status == 503
    finally:
        private_engine.start()
