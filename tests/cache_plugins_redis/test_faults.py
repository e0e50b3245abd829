"""L2 faults, on loopback: traffic blackholed, delayed, cut and refused by a TCP proxy
between the agent and the engine; the engine killed with SIGKILL and restarted on its port;
writes paused (CLIENT PAUSE WRITE); the pool exhausted by 10x its size in concurrent
requests. What must hold: answers within the budget, no 500, L1 hits served, a 503 for the
rest, /health degraded, recovery without a restart, connections back to the pool's bound,
and no reply ever given to the wrong request after a cancelled one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import SimpleNamespace
from typing import Any

import pytest

from cache_core import CachingAgent, TierUnavailableError
from cache_server import create_app
from cache_server.keys import AGENT

OPERATION_TIMEOUT = 0.3
RESET_TIMEOUT = 0.5


def faulty_config(proxy: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {
            "url": f"redis://127.0.0.1:{proxy.port}/0",
            "key_prefix": prefix,
            "socket_timeout": 1,
            "connect_timeout": 0.5,
            "retry_attempts": 1,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
        "circuit_breaker": {
            "failure_threshold": 2,
            "reset_timeout": RESET_TIMEOUT,
            "operation_timeout": OPERATION_TIMEOUT,
        },
    }


async def timed(call: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    try:
        result: Any = await call
    except TierUnavailableError as exc:
        result = exc
    return time.perf_counter() - start, result


async def test_blackholed_l2_answers_within_budget_and_recovers(
    aiohttp_client: Any, proxy: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(faulty_config(proxy, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "hot", "value": 1})
    await client.post("/cache", json={"key": "cold", "value": 2, "strategy": "write_around"})
    proxy.mode = "blackhole"
    # L1 answers as if nothing happened.
    resp = await client.get("/cache/hot")
    assert (resp.status, (await resp.json())["tier"]) == (200, "l1")
    # What only L2 has: a 503 within the operation timeout, then at once (breaker open).
    for _ in range(2):
        start = time.perf_counter()
        resp = await client.get("/cache/cold")
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "tier_unavailable"
        assert time.perf_counter() - start < OPERATION_TIMEOUT + 0.5
    start = time.perf_counter()
    resp = await client.get("/cache/cold")
    assert resp.status == 503
    assert time.perf_counter() - start < 0.1  # no waiting on a dead server
    health = await (await client.get("/health")).json()
    assert health["status"] == "degraded"
    assert "circuit open" in health["reasons"][0]
    # Writes that must reach L2 fail clearly; write-back keeps buffering.
    resp = await client.post("/cache", json={"key": "w", "value": 3})
    assert resp.status == 503
    resp = await client.post("/cache", json={"key": "b", "value": 4, "strategy": "write_back"})
    assert resp.status == 200
    # L2 comes back: after the cool-down one probe closes the breaker, no restart needed.
    proxy.mode = "pass"
    await asyncio.sleep(RESET_TIMEOUT + 0.1)
    deadline = time.monotonic() + 5
    while True:
        resp = await client.get("/cache/cold")
        if resp.status == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (await resp.json())["value"] == 2
    assert (await (await client.get("/health")).json())["status"] == "ok"
    assert agent.breaker.state == "closed"


async def test_cut_connections_serve_l1_once_the_breaker_opens_then_recover(
    proxy: Any, prefix: str
) -> None:
    async with CachingAgent.from_config(faulty_config(proxy, prefix), env={}) as agent:
        await agent.set("hot", {"v": 1})
        proxy.cut()  # like an engine killed: connections reset, new ones refused
        outcomes = [await timed(agent.get("other")) for _ in range(2)]
        assert all(isinstance(r, TierUnavailableError) for _, r in outcomes)
        assert all(took < OPERATION_TIMEOUT + 0.5 for took, _ in outcomes)
        assert agent.breaker.state == "open"
        assert await agent.get("hot") == {"v": 1}  # served from L1 while L2 is away
        health = agent.health()
        status, reasons = health["status"], health["reasons"]
        assert status == "degraded"
        assert len(reasons) == 2  # the breaker, and the change notices
        proxy.mode = "pass"
        deadline = time.monotonic() + 10
        while agent.health()["status"] != "ok":
            assert time.monotonic() < deadline, agent.health()
            with contextlib.suppress(TierUnavailableError):
                await agent.get("other")
            await asyncio.sleep(0.1)
        # Coherence came back: L1 was emptied (it may have missed notices) and refills.
        assert await agent.lookup("hot") == (b'{"v":1}', "l2")


def direct_config(engine: Any, prefix: str, **redis: Any) -> dict[str, Any]:
    cfg = faulty_config(SimpleNamespace(port=engine.port), prefix)
    cfg["redis"] |= {"url": engine.url, **redis}
    return cfg


def our_connections(engine: Any, agent: CachingAgent) -> int:
    """Connections the engine holds open for ``agent`` (pool and subscriber)."""
    name = f"caching-agent-{l2_of(agent).instance_id}"
    clients = engine.client.execute_command("CLIENT", "LIST", "TYPE", "normal")
    subscribers = engine.client.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
    return f"{clients.decode()}{subscribers.decode()}".count(f"name={name} ")


def l2_of(agent: CachingAgent) -> Any:
    assert agent.l2 is not None
    return agent.l2


def in_use(agent: CachingAgent) -> int:
    return len(l2_of(agent).client.connection_pool._in_use_connections)


async def until_healthy(agent: CachingAgent, probe_key: str = "probe", timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while agent.health()["status"] != "ok":
        assert time.monotonic() < deadline, agent.health()
        with contextlib.suppress(TierUnavailableError):
            await agent.get(probe_key)
        await asyncio.sleep(0.05)


async def test_engine_killed_and_restarted_on_its_port(private_engine: Any, prefix: str) -> None:
    cfg = direct_config(private_engine, prefix)
    async with (
        CachingAgent.from_config(cfg, env={}) as a,
        CachingAgent.from_config(cfg, env={}) as b,
    ):
        await a.set("hot", 1)
        await a.set("cold", 2, strategy="write_around")
        private_engine.kill()
        outcomes = [await timed(a.get("cold")) for _ in range(2)]
        assert all(isinstance(r, TierUnavailableError) for _, r in outcomes), outcomes
        assert all(took < OPERATION_TIMEOUT + 0.5 for took, _ in outcomes)
        assert a.breaker.state == "open"
        assert await a.get("hot") == 1  # L1 answers while the engine is dead
        took, result = await timed(a.set("w", 3))
        assert isinstance(result, TierUnavailableError) and took < 0.1  # open: no waiting
        private_engine.start()  # same port; its data is gone (no persistence here)
        await until_healthy(a)
        await until_healthy(b)
        # Both recovered without a restart, and L1 was emptied: it may have missed notices.
        assert await a.lookup("hot") is None
        await b.set("hot", 10)
        await a.set("w", 3)
        assert await a.get("hot") == 10
        assert await b.get("w") == 3
        assert in_use(a) == 0


async def test_added_latency_within_and_beyond_the_budget(
    aiohttp_client: Any, proxy: Any, prefix: str
) -> None:
    client = await aiohttp_client(create_app(faulty_config(proxy, prefix), env={}))
    agent = client.server.app[AGENT]
    await client.post("/cache", json={"key": "hot", "value": 1})
    for i in range(20):
        await client.post("/cache", json={"key": f"k{i}", "value": i, "strategy": "write_around"})
    # Slow but within the operation timeout: every answer is right, the breaker stays shut.
    proxy.delay = 0.04
    start = time.perf_counter()
    resp = await client.get("/cache/k0")
    assert time.perf_counter() - start >= 0.08  # really delayed (a round trip, two ways)
    assert (resp.status, (await resp.json())["value"]) == (200, 0)
    assert agent.breaker.state == "closed"
    # Slower than the budget: 503 within it, never a 500; L1 hits are served at once.
    proxy.delay = 2.0
    answers = await asyncio.gather(*(timed_get(client, f"k{i}") for i in range(1, 10)))
    assert {status for _, status, _ in answers} == {503}, answers
    assert max(took for took, _, _ in answers) < OPERATION_TIMEOUT + 0.5
    took, status, body = await timed_get(client, "hot")
    assert (status, body["tier"]) == (200, "l1") and took < 0.1
    # The late replies of the cancelled reads must never answer later requests.
    proxy.delay = 0.0
    await until_healthy(agent)
    answers = await asyncio.gather(*(timed_get(client, f"k{i}") for i in range(20)))
    assert [body["value"] for _, _, body in answers] == list(range(20))
    assert in_use(agent) == 0


async def timed_get(client: Any, key: str) -> tuple[float, int, Any]:
    start = time.perf_counter()
    resp = await client.get(f"/cache/{key}")
    return time.perf_counter() - start, resp.status, await resp.json()


async def test_cancelled_reads_never_leave_a_reply_for_the_next_request(
    private_engine: Any, prefix: str
) -> None:
    cfg = direct_config(private_engine, prefix, max_connections=2)
    cfg["circuit_breaker"]["operation_timeout"] = 5
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set_many({f"c{i}": i for i in range(50)}, strategy="write_around")
        for i in range(50):
            # Cancelled at every point of the round trip: before, while and after sending.
            task = asyncio.create_task(agent.get(f"c{i}"))
            for _ in range(i % 4):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert await agent.get(f"c{(i + 1) % 50}") == (i + 1) % 50
        assert in_use(agent) == 0
        assert our_connections(private_engine, agent) <= 2 + 1  # the pool and the subscriber


async def test_client_pause_write_reads_go_on_writes_fail_in_budget(
    private_engine: Any, prefix: str
) -> None:
    cfg = direct_config(private_engine, prefix)
    cfg["strategies"] = {"write_back": {"batch_size": 1000, "flush_interval": 0.2}}
    async with CachingAgent.from_config(cfg, env={}) as agent:
        await agent.set("hot", 1)
        await agent.set("cold", 2, strategy="write_around")
        private_engine.client.execute_command("CLIENT", "PAUSE", 20000, "WRITE")
        try:
            assert await agent.get("cold") == 2  # reads are not paused
            took, result = await timed(agent.set("w", 3))
            assert isinstance(result, TierUnavailableError), result
            assert took < OPERATION_TIMEOUT + 0.5
            assert await agent.get("hot") == 1
            await agent.set("b", 4, strategy="write_back")  # buffered, flush retried
            await asyncio.sleep(0.5)
            assert agent.write_back_pending() == 1
        finally:
            private_engine.client.execute_command("CLIENT", "UNPAUSE")
        await until_healthy(agent)
        await agent.set("w", 5)
        deadline = time.monotonic() + 5
        while private_engine.client.exists(f"{prefix}b") == 0:
            assert time.monotonic() < deadline, "the buffered write never reached L2"
            await asyncio.sleep(0.05)
        assert await agent.get("w") == 5


async def test_pool_exhausted_by_ten_times_its_size(
    aiohttp_client: Any, private_engine: Any, prefix: str
) -> None:
    size = 4
    cfg = direct_config(private_engine, prefix, max_connections=size)
    cfg["circuit_breaker"]["operation_timeout"] = 2
    client = await aiohttp_client(create_app(cfg, env={}))
    agent = client.server.app[AGENT]
    baseline = our_connections(private_engine, agent)
    keys = [f"p{i}" for i in range(10 * size)]
    for i, key in enumerate(keys):
        await client.post("/cache", json={"key": key, "value": i, "strategy": "write_around"})

    async def write(key: str, value: int) -> int:
        resp = await client.post("/cache", json={"key": key, "value": value})
        return int(resp.status)

    for _ in range(3):
        answers = await asyncio.gather(
            *(timed_get(client, key) for key in keys),
            *(write(f"q{i}", i) for i in range(10 * size)),
        )
        gets = answers[: len(keys)]
        assert [(status, body["value"]) for _, status, body in gets] == [
            (200, i) for i in range(len(keys))
        ]
        assert set(answers[len(keys) :]) == {200}
        assert max(took for took, _, _ in gets) < 2
    assert in_use(agent) == 0
    assert our_connections(private_engine, agent) <= size + 1  # the pool's bound + subscriber
    assert baseline <= size + 1


async def test_write_back_buffers_up_to_its_bound_while_l2_is_away(
    aiohttp_client: Any, proxy: Any, prefix: str, engine: Any
) -> None:
    cfg = faulty_config(proxy, prefix)
    cfg["strategies"] = {"write_back": {"batch_size": 100, "flush_interval": 0.2, "max_pending": 5}}
    client = await aiohttp_client(create_app(cfg, env={}))
    proxy.mode = "blackhole"

    async def write_back(key: str, value: int) -> int:
        body = {"key": key, "value": value, "strategy": "write_back"}
        return int((await client.post("/cache", json=body)).status)

    assert [await write_back(f"wb{i}", i) for i in range(5)] == [200] * 5
    assert await write_back("wb0", 10) == 200  # a rewrite of a waiting key takes no room
    resp = await client.post("/cache", json={"key": "wb5", "value": 5, "strategy": "write_back"})
    assert resp.status == 503
    assert "write-back buffer is full" in (await resp.json())["error"]["message"]
    agent = client.server.app[AGENT]
    assert "wb5" not in agent.l1 and agent.write_back_pending() == 5  # nothing changed
    proxy.mode = "pass"
    deadline = time.monotonic() + 10
    while engine.client.exists(*(f"{prefix}wb{i}" for i in range(5))) < 5:
        assert time.monotonic() < deadline, "the buffered writes never reached L2"
        await asyncio.sleep(0.05)
    assert engine.client.get(f"{prefix}wb0").endswith(b"10")  # the rewrite, not the first
    assert await write_back("wb5", 5) == 200  # room again


def write_back_config(proxy: Any, prefix: str) -> dict[str, Any]:
    """Faults' config, write_back flushed only when the test says."""
    cfg = faulty_config(proxy, prefix)
    cfg["strategies"] = {"write_back": {"batch_size": 100, "flush_interval": 60}}
    return cfg


async def test_a_failed_write_keeps_the_buffered_write_it_would_replace(
    proxy: Any, prefix: str, engine: Any
) -> None:
    """Found by the two-agent model (FAILED_WRITE_DROPS_BUFFERED): a write_through of a key
    held by write_back dropped the held write before its own failed, so the acknowledged
    write_back value never reached L2."""
    async with CachingAgent.from_config(write_back_config(proxy, prefix), env={}) as agent:
        await agent.set("k", "old", strategy="write_through")
        await agent.set("k", "held", strategy="write_back")
        proxy.cut()
        with pytest.raises(TierUnavailableError):
            await agent.set("k", "refused", strategy="write_through")
        proxy.mode = "pass"
        await until_healthy(agent)
        await agent.strategies["write_back"].flush()  # type: ignore[attr-defined]
        assert engine.client.get(prefix + "k").endswith(b'"held"')
        assert await agent.get("k") == "held"


async def test_a_failed_tagged_rewrite_leaves_the_held_write_to_be_settled(
    proxy: Any, prefix: str
) -> None:
    """Found by the two-agent model (FAILED_UNDEFERS): a tagged write_back rewrite whose
    indexing failed had already taken the key off the list its flush settles, so the plain
    write held before it landed and the old value's tag still reached it for good."""
    async with CachingAgent.from_config(write_back_config(proxy, prefix), env={}) as agent:
        await agent.set("k", 0, tags=["old"])
        await agent.set("k", 1, strategy="write_back")  # "old" leaves k once this lands
        proxy.cut()
        with pytest.raises(TierUnavailableError):
            await agent.set("k", 2, strategy="write_back", tags=["new"])
        proxy.mode = "pass"
        await until_healthy(agent)
        await agent.strategies["write_back"].flush()  # type: ignore[attr-defined]
        assert await agent.invalidate_by_tags(["old"]) == 0
        assert await agent.get("k") == 1


@pytest.mark.parametrize("removal", ["delete", "pattern"])
async def test_a_failed_removal_keeps_the_buffered_write(
    proxy: Any, prefix: str, engine: Any, removal: str
) -> None:
    """Found by the two-agent model (FAILED_PATTERN_DROPS_BUFFERED, and a delete alike): a
    removal that failed (L2 away) had already dropped the held write_back write, so once
    L2 was back the key read the value before it. Nothing of the removal reached L2, so the
    held write must land."""
    async with CachingAgent.from_config(write_back_config(proxy, prefix), env={}) as agent:
        await agent.set("k", "old", strategy="write_through")
        await agent.set("k", "held", strategy="write_back")
        remove = agent.delete("k") if removal == "delete" else agent.invalidate_pattern("k*")
        proxy.cut()
        with pytest.raises(TierUnavailableError):
            await remove
        proxy.mode = "pass"
        await until_healthy(agent)
        await agent.strategies["write_back"].flush()  # type: ignore[attr-defined]
        assert engine.client.get(prefix + "k").endswith(b'"held"')
        assert await agent.get("k") == "held"


async def test_the_first_calls_after_a_cut_do_not_fail_on_connections_that_died_with_it(
    proxy: Any, prefix: str
) -> None:
    """Found by the two-agent model: with ``retry_attempts: 0`` each idle pooled connection
    that died in a cut failed the next call made on it once the engine was back, opening
    the breaker again. When the subscription is back, the idle ones are closed first."""
    config = faulty_config(proxy, prefix)
    config["redis"]["retry_attempts"] = 0
    config["circuit_breaker"]["failure_threshold"] = 1
    config["circuit_breaker"]["reset_timeout"] = 0.05
    async with CachingAgent.from_config(config, env={}) as agent:
        await asyncio.gather(*(agent.set(f"k{i}", i) for i in range(20)))  # several in the pool
        proxy.cut()
        with contextlib.suppress(TierUnavailableError):
            await agent.get("k0")
        proxy.mode = "pass"
        deadline = time.monotonic() + 10
        while not agent.l2.coherent:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # the breaker half-opens
        for i in range(20):
            agent.l1.clear()
            assert await agent.get(f"k{i}") == i


async def test_a_subscription_whose_ping_goes_unanswered_counts_as_dropped(
    proxy: Any, prefix: str
) -> None:
    """A peer gone without closing the connection sends nothing at all: the subscriber's
    PING when quiet, unanswered within socket_timeout, is how its loss is seen (L1 stops
    being served), and the subscription comes back once the engine answers again."""
    cfg = faulty_config(proxy, prefix)
    cfg["redis"].update({"health_check_interval": 0.2, "socket_timeout": 0.2})
    async with CachingAgent.from_config(cfg, env={}) as agent:
        tier = l2_of(agent)
        assert tier.coherent
        proxy.mode = "blackhole"
        deadline = time.monotonic() + 3
        while tier.coherent:
            assert time.monotonic() < deadline, "the silent subscription was never dropped"
            await asyncio.sleep(0.02)
        proxy.cut()
        proxy.mode = "pass"
        deadline = time.monotonic() + 5
        while not tier.coherent:
            assert time.monotonic() < deadline, "the subscription never came back"
            await asyncio.sleep(0.02)
