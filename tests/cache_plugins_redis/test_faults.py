"""L2 faults through a TCP proxy on loopback between the agent and the engine: traffic
blackholed, connections cut and refused. What must hold: answers within the budget, no
500, L1 hits served, a 503 for the rest, /health degraded, recovery without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cache_core import CachingAgent, TierUnavailableError
from cache_server import create_app
from cache_server.keys import AGENT

OPERATION_TIMEOUT = 0.3
RESET_TIMEOUT = 0.5


class Proxy:
    """Forwards 127.0.0.1:port to the engine; ``mode`` pass, blackhole (hold every byte)
    or refuse (cut every connection, refuse new ones)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refuse":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                while self.mode == "blackhole":  # noqa: ASYNC110 - a test double, polled
                    await asyncio.sleep(0.01)
                if self.mode == "refuse":
                    break
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    def cut(self) -> None:
        self.mode = "refuse"
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def proxy(engine: Any) -> AsyncIterator[Proxy]:
    proxied = Proxy(engine.port)
    await proxied.start()
    yield proxied
    await proxied.close()


def faulty_config(proxy: Proxy, prefix: str) -> dict[str, Any]:
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
    aiohttp_client: Any, proxy: Proxy, prefix: str
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
    proxy: Proxy, prefix: str
) -> None:
    async with CachingAgent.from_config(faulty_config(proxy, prefix), env={}) as agent:
        await agent.set("hot", {"v": 1})
        proxy.cut()  # like an engine killed: connections reset, new ones refused
        outcomes = [await timed(agent.get("other")) for _ in range(2)]
        assert all(isinstance(r, TierUnavailableError) for _, r in outcomes)
        assert all(took < OPERATION_TIMEOUT + 0.5 for took, _ in outcomes)
        assert agent.breaker.state == "open"
        assert await agent.get("hot") == {"v": 1}  # served from L1 while L2 is away
        status, reasons = agent.health()
        assert status == "degraded"
        assert len(reasons) == 2  # the breaker, and the change notices
        proxy.mode = "pass"
        deadline = time.monotonic() + 10
        while agent.health()[0] != "ok":
            assert time.monotonic() < deadline, agent.health()
            with contextlib.suppress(TierUnavailableError):
                await agent.get("other")
            await asyncio.sleep(0.1)
        # Coherence came back: L1 was emptied (it may have missed notices) and refills.
        assert await agent.lookup("hot") == (b'{"v":1}', "l2")
