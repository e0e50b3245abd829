"""TLS to L2 with a CA made in the test: the ``rediss://`` URL and the ``redis.ssl_*``
options. The embedded Valkey binary is built without TLS, so TLS ends in a small
terminator on loopback (as stunnel or a cloud proxy would) in front of the real engine;
what is tested is the agent's side: verification against the CA, the host name, and a
client certificate when the server asks for one."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from cache_core import CachingAgent, TierUnavailableError


class TlsFront:
    """Accepts TLS on 127.0.0.1 and forwards the plain bytes to the engine."""

    def __init__(self, engine_port: int, context: ssl.SSLContext) -> None:
        self.engine_port = engine_port
        self.context = context
        self.port = 0
        self.handshakes = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.context, ssl_handshake_timeout=5
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.engine_port)
        self._writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            await self._server.wait_closed()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def front(engine: Any, ca: trustme.CA) -> AsyncIterator[TlsFront]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    # Ask for a client certificate signed by the CA: mutual TLS.
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    server = TlsFront(engine.port, context)
    await server.start()
    yield server
    await server.close()


def tls_config(front: TlsFront, prefix: str, **tls: Any) -> dict[str, Any]:
    return {
        "redis": {
            "url": f"rediss://localhost:{front.port}/0",
            "key_prefix": prefix,
            "retry_attempts": 0,
            "connect_timeout": 2,
            **tls,
        },
        "cache_tiers": {"l1": {"max_size_mb": 1}, "l2": {"type": "redis"}},
    }


def files(tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    client = ca.issue_cert("caching-agent@example.test")
    paths = {
        "ssl_ca_certs": tmp_path / "ca.pem",
        "ssl_certfile": tmp_path / "client.pem",
        "ssl_keyfile": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ssl_ca_certs"]))
    client.cert_chain_pems[0].write_to_path(str(paths["ssl_certfile"]))
    client.private_key_pem.write_to_path(str(paths["ssl_keyfile"]))
    return {name: str(path) for name, path in paths.items()}


async def test_rediss_with_the_ca_and_a_client_certificate(
    front: TlsFront, ca: trustme.CA, tmp_path: Path, prefix: str, engine: Any
) -> None:
    config = tls_config(front, prefix, **files(tmp_path, ca))
    async with (
        CachingAgent.from_config(config, env={}) as a,
        CachingAgent.from_config(config, env={}) as b,
    ):
        await a.set("k", {"v": 1})
        assert engine.client.exists(f"{prefix}k") == 1  # it went through to the engine
        assert await b.get("k") == {"v": 1}  # from L2, over TLS
        await b.set("k", {"v": 2})
        for _ in range(100):  # the change notice reaches a over its TLS subscription
            if await a.lookup("k") == (b'{"v":2}', "l2"):
                break
            await asyncio.sleep(0.01)
        assert await a.get("k") == {"v": 2}
        assert a.l2 is not None and a.l2.describe()["coherent"] is True
    assert front.handshakes >= 4  # a pool connection and a subscriber each


async def test_a_server_signed_by_another_ca_is_refused_at_start(
    front: TlsFront, ca: trustme.CA, tmp_path: Path, prefix: str
) -> None:
    tls = files(tmp_path, ca)
    trustme.CA().cert_pem.write_to_path(tls["ssl_ca_certs"])  # trust someone else
    agent = CachingAgent.from_config(tls_config(front, prefix, **tls), env={})
    with pytest.raises(TierUnavailableError, match="cannot use L2 at rediss://localhost"):
        await agent.start()


async def test_the_host_name_is_checked(
    front: TlsFront, ca: trustme.CA, tmp_path: Path, prefix: str
) -> None:
    config = tls_config(front, prefix, **files(tmp_path, ca))
    config["redis"]["url"] = f"rediss://127.0.0.1:{front.port}/0"  # not in the certificate
    with pytest.raises(TierUnavailableError, match="cannot use L2"):
        await CachingAgent.from_config(config, env={}).start()
    config["redis"]["ssl_check_hostname"] = False  # still verified against the CA
    async with CachingAgent.from_config(config, env={}) as agent:
        await agent.set("k", 1)
        assert await agent.get("k") == 1


async def test_without_a_client_certificate_the_server_refuses(
    front: TlsFront, ca: trustme.CA, tmp_path: Path, prefix: str
) -> None:
    tls = files(tmp_path, ca)
    config = tls_config(front, prefix, ssl_ca_certs=tls["ssl_ca_certs"])
    with pytest.raises(TierUnavailableError, match="cannot use L2"):
        await CachingAgent.from_config(config, env={}).start()
