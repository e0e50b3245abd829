"""Shared test set-up: real engines (a standalone server, a 3-master cluster, a sentinel),
each started from the engine binary when a test first asks for it, on loopback only."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import redis

START_TIMEOUT = 15.0

# tests/minimal asserts that no plugin package is installed: it runs only in `nox -s minimal`.
collect_ignore = [] if os.environ.get("CACHING_AGENT_MINIMAL") else ["minimal"]


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


class Engine:
    """One engine process on 127.0.0.1:port."""

    def __init__(self, workdir: Path, port: int, *extra: str) -> None:
        # Imported here: the minimal session loads this file without the redis packages.
        import redis

        from cache_plugins_redis.engine import find_engine_binary

        self.port = port
        self.workdir = workdir
        self._command = [find_engine_binary(), *extra]
        workdir.mkdir(parents=True, exist_ok=True)
        self.client: redis.Redis = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        self.start()

    def start(self) -> None:
        """Start the process (again, after :meth:`kill`: same port, same directory)."""
        import redis

        port, workdir = self.port, self.workdir
        self.process = subprocess.Popen(
            [
                *self._command,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(workdir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(workdir / "engine.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                if self.client.ping():
                    break
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (workdir / "engine.log").read_text()
                    if (workdir / "engine.log").exists()
                    else ""
                )
                raise RuntimeError(f"engine on port {port} did not start: {log[-2000:]}")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL: the engine dies mid-whatever, its clients' connections reset."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    server = Engine(tmp_path_factory.mktemp("engine"), free_port())
    yield server
    server.stop()


@pytest.fixture
def private_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine of this test's own, for faults that would disturb other tests."""
    server = Engine(tmp_path / "engine", free_port())
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so tests sharing the engine never see each other."""
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Engine]]:
    """Three masters splitting the 16384 slots, joined with CLUSTER MEET."""
    base = tmp_path_factory.mktemp("cluster")
    nodes = []
    try:
        for i in range(3):
            port = free_port()
            nodes.append(
                Engine(
                    base / str(i),
                    port,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(base / f"nodes-{i}.conf"),
                    "--cluster-node-timeout",
                    "5000",
                )
            )
        bounds = [(0, 5460), (5461, 10922), (10923, 16383)]
        for node, (lo, hi) in zip(nodes, bounds, strict=True):
            node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for node in nodes[1:]:
            nodes[0].client.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + 30
        while not all(
            b"cluster_state:ok" in n.client.execute_command("CLUSTER", "INFO")
            and n.client.execute_command("CLUSTER", "INFO").count(b"cluster_known_nodes:3")
            for n in nodes
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not reach cluster_state:ok")
            time.sleep(0.1)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture(scope="session")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine]]:
    """A master and one sentinel watching it as `mymaster`."""
    base = tmp_path_factory.mktemp("sentinel")
    master = Engine(base / "master", free_port())
    conf = base / "sentinel.conf"
    conf.write_text(
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 5000\n"
    )
    try:
        watcher = Engine(base / "sentinel", free_port(), str(conf), "--sentinel")
    except Exception:
        master.stop()
        raise
    deadline = time.monotonic() + 15
    while True:
        try:
            found = watcher.client.execute_command(
                "SENTINEL", "get-master-addr-by-name", "mymaster"
            )
            if found:
                break
        except Exception:  # the sentinel may still be starting
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("sentinel did not learn the master")
        time.sleep(0.1)
    yield master, watcher
    watcher.stop()
    master.stop()


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Fail past ``seconds``: SIGALRM interrupts a regex stuck in C (which blocks the event
    loop too), so a hang fails instead of stalling the suite."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def deadline() -> Callable[[float], contextlib.AbstractContextManager[None]]:
    """``with deadline(seconds):`` fails the test past ``seconds``, even inside C code."""
    return _deadline


def _count_rounds(client: Any) -> list[int]:
    """From now on, the commands of each round trip ``client`` (a CoalescingClient) makes,
    one length per round: what auto-pipelining merged is one round."""
    rounds: list[int] = []
    execute = client.batcher._run

    async def counted(queued: Any) -> Any:
        rounds.append(len(queued))
        return await execute(queued)

    client.batcher._run = counted
    return rounds


@pytest.fixture
def count_rounds() -> Callable[[Any], list[int]]:
    """``rounds = count_rounds(client)``: round trips of a CoalescingClient, as they go."""
    return _count_rounds


LOADER_SOURCE = """
import asyncio

CALLS = []
DATA = {"1": {"name": "Ada"}, "2": {"name": "Grace"}}


async def profile(key, ids):
    CALLS.append(key)
    await asyncio.sleep(0.05)  # long enough for every concurrent caller to pile up
    return DATA.get(ids["user_id"])


def plain(key, ids):
    CALLS.append(key)
    return {"key": key}
"""


@pytest.fixture
def loader_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An importable module ``loader_source_<n>`` (its name in ``.NAME``) with loader
    functions for ``loaders.python`` that record every key in ``CALLS``; shared by the
    core's and the server's loader tests."""
    name = f"loader_source_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(LOADER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    module: Any = __import__(name)
    module.NAME = name
    return module


SEED_STATS_FIELDS: dict[str, type] = {
    "hits": int,
    "misses": int,
    "sets": int,
    "deletes": int,
    "hit_rate": float,
    "avg_latency_ms": float,
    "l1_size_bytes": int,
    "l2_size_keys": int,
}


@pytest.fixture
def seed_stats_fields() -> dict[str, type]:
    """The statistics the product description shows, and the type of each."""
    return dict(SEED_STATS_FIELDS)
