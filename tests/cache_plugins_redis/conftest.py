"""The L2 tests' config: the session engine (or the cluster), a prefix of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio.connection import AbstractConnection

from cache_plugins_redis import wire


@pytest.fixture
def l2_config(engine: Any, prefix: str) -> dict[str, Any]:
    return {
        "redis": {"url": engine.url, "key_prefix": prefix},
        "cache_tiers": {"l1": {"max_size_mb": 1, "ttl": 60}, "l2": {"type": "redis", "ttl": 3600}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }


@pytest.fixture
def cluster_config(cluster: list[Any], prefix: str) -> dict[str, Any]:
    """The 3-master cluster of tests/conftest.py, write_back flushed only when asked."""
    return {
        "redis": {
            "cluster_mode": True,
            "nodes": [{"host": "127.0.0.1", "port": node.port} for node in cluster],
            "key_prefix": prefix,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
        "strategies": {"write_back": {"batch_size": 1000, "flush_interval": 60}},
    }


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """``sends()``: how many times any connection has sent (one per command or pipeline;
    on the tier's wire, one per write, which carries the commands of one tick)."""
    count = 0
    real = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal count
        count += 1
        await real(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    write = wire._Connection.write

    def written(self: wire._Connection, chunks: list[bytes], commands: int) -> None:
        nonlocal count
        count += 1
        write(self, chunks, commands)

    monkeypatch.setattr(wire._Connection, "write", written)
    return lambda: count


class Proxy:
    """Forwards 127.0.0.1:port to the engine; ``mode`` pass, blackhole (hold every byte)
    or refuse (cut every connection, refuse new ones); ``delay`` seconds added to every
    chunk each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = "pass"
        self.delay = 0.0
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
                if self.delay:
                    await asyncio.sleep(self.delay)
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


@pytest.fixture
def new_proxy(engine: Any) -> Callable[[], Proxy]:
    """``new_proxy()``: a :class:`Proxy` to the session's engine, not started: a test that
    runs its own event loop starts (and closes) it there."""
    return lambda: Proxy(engine.port)
