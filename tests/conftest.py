"""Shared test set-up: real engines (a standalone server, a 3-master cluster, a sentinel),
each started from the engine binary when a test first asks for it, on loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from cache_core import CachingAgent

if TYPE_CHECKING:
    import redis

START_TIMEOUT = 15.0

# tests/cache_testing runs users' test files with the testing extra's plugin.
pytest_plugins = ["pytester"]

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
            except (redis.RedisError, AttributeError):
                # AttributeError: redis-py 8.0.1 (the lowest session's) can fail to parse the
                # HELLO reply of an engine still starting ("'list' object has no attribute
                # 'get'"); CI's lowest session hit it once. Asked again, it answers.
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()  # not left running for a later test's warning
                self.process.wait()
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

    def entries(self, *names: str) -> int:
        """How many of ``names`` hold a cache entry: a delete's tombstone (a header alone,
        codec id 0xFF) is none, though the engine holds the key."""
        from cache_core.frames import is_tombstone

        found: list[Any] = list(self.client.mget(names)) if names else []
        return sum(1 for frame in found if frame is not None and not is_tombstone(frame))

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


@pytest.fixture
def count_rounds(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], list[int]]:
    """``rounds = count_rounds(tier)`` (a Redis tier, or a CoalescingClient): from then
    on, the commands of each round trip it makes, one length per round: what
    auto-pipelining merged is one round (a pipeline of its client, a write on its wire)."""

    def count(target: Any) -> list[int]:
        rounds: list[int] = []
        client = target if hasattr(target, "batcher") else target._client
        execute = client.batcher._run

        async def counted(queued: Any) -> Any:
            rounds.append(len(queued))
            return await execute(queued)

        monkeypatch.setattr(client.batcher, "_run", counted)
        wire = getattr(target, "_wire", None)
        if wire is not None:
            from cache_plugins_redis import wire as wire_module

            write = wire_module._Connection.write

            def written(conn: Any, chunks: list[bytes], commands: int) -> None:
                if conn is wire._conn:
                    rounds.append(commands)
                write(conn, chunks, commands)

            monkeypatch.setattr(wire_module._Connection, "write", written)
        return rounds

    return count


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


THIRD_PARTY = Path(__file__).parent / "third_party"


def _third_party(name: str) -> ModuleType:
    """A plugin module of tests/third_party, loaded by its path: ``--import-mode=importlib``
    puts no test directory on sys.path, and no test may depend on what is installed.
    Kept in sys.modules so the type hints of its attrs classes resolve."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, THIRD_PARTY / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def sqlite_tier() -> ModuleType:
    """The third-party-style SQLite L2 tier plugin (tests/third_party/sqlite_tier.py): pass
    it as ``plugins=[sqlite_tier]``; ``cache_tiers.l2.type: sqlite``."""
    return _third_party("sqlite_tier")


@attrs.define
class L2Backend:
    """An L2 tier an agent under test runs on, and the test's own view of its store."""

    name: str
    l2: dict[str, Any]
    """``cache_tiers.l2``."""
    sections: dict[str, Any]
    """The tier's own top-level sections of config.yaml."""
    plugins: tuple[object, ...]
    """What to pass to ``from_config`` besides what is installed (a plugin of tests/)."""
    alone: str
    """``CACHING_AGENT_PLUGINS`` admitting no installed plugin but the tier's own."""
    stored: Callable[[str], bytes | None]
    """The bytes the store holds under a key, read past the tier."""
    plant: Callable[[str, bytes], None]
    """Writes bytes under a key past the tier (never expiring), as any client could."""

    def config(self, **sections: Any) -> dict[str, Any]:
        """A config on this L2 (L1 of 4 MB before it); top-level ``sections`` added."""
        tiers = {"l1": {"max_size_mb": 4}, "l2": dict(self.l2)}
        return {"cache_tiers": tiers, **copy.deepcopy(self.sections), **sections}

    def agent(self, config: Any, *plugins: object, alone: bool = False) -> Any:
        """An agent of ``config`` (not started) with every installed plugin, or with none
        but the tier's own when ``alone``, and ``plugins``."""

        env = {ALLOW_LIST: self.alone} if alone else {}
        return CachingAgent.from_config(config, plugins=[*self.plugins, *plugins], env=env)


ALLOW_LIST = "CACHING_AGENT_PLUGINS"


def _redis_backend(engine: Engine, prefix: str) -> L2Backend:
    def stored(key: str) -> bytes | None:
        data: bytes | None = engine.client.get(prefix + key)  # type: ignore[assignment]
        return data

    def plant(key: str, data: bytes) -> None:
        engine.client.set(prefix + key, data)

    return L2Backend(
        name="redis",
        l2={"type": "redis"},
        sections={"redis": {"url": engine.url, "key_prefix": prefix}},
        plugins=(),
        alone="redis",
        stored=stored,
        plant=plant,
    )


def _sqlite_backend(plugin: ModuleType, path: Path) -> L2Backend:
    def stored(key: str) -> bytes | None:
        with contextlib.closing(sqlite3.connect(path)) as db:
            row = db.execute("SELECT data FROM entries WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def plant(key: str, data: bytes) -> None:
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            db.executescript(plugin.SCHEMA)  # the tier may not have started yet
            db.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, NULL)", (key, data))

    return L2Backend(
        name="sqlite",
        l2={"type": "sqlite"},
        sections={"sqlite": {"path": str(path)}},
        plugins=(plugin,),
        alone="",
        stored=stored,
        plant=plant,
    )


@pytest.fixture
def make_l2(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], L2Backend]:
    """``make_l2(name)``: the L2 backend ``redis`` (the shipped tier on the session's
    engine, under this test's prefix) or ``sqlite`` (the third-party tier of tests/, on a
    file of this test's own)."""

    def make(name: str) -> L2Backend:
        if name == "redis":
            engine = request.getfixturevalue("engine")
            return _redis_backend(engine, request.getfixturevalue("prefix"))
        return _sqlite_backend(request.getfixturevalue("sqlite_tier"), tmp_path / "l2.sqlite")

    return make


@pytest.fixture(params=["redis", "sqlite"])
def l2_backend(request: pytest.FixtureRequest, make_l2: Callable[[str], L2Backend]) -> L2Backend:
    """Each L2 tier in turn: the shipped Redis tier and the third-party SQLite tier."""
    return make_l2(request.param)


# -- agents on a fake clock (tests/cache_core, tests/cache_plugins_invalidation) ----------

NO_PLUGINS_ENV = {"CACHING_AGENT_PLUGINS": ""}

BASE_CONFIG: dict[str, Any] = {
    "cache_tiers": {"l1": {"type": "memory", "max_size_mb": 4, "ttl": 300}},
    "compression": {"enable": False},
}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def no_plugins_env() -> dict[str, str]:
    return dict(NO_PLUGINS_ENV)


@pytest.fixture
def base_config() -> Callable[..., dict[str, Any]]:
    """``base_config(**sections)``: a fresh L1-only config, top-level sections replaced."""

    def make(**sections: Any) -> dict[str, Any]:
        cfg = copy.deepcopy(BASE_CONFIG)
        cfg.update(copy.deepcopy(sections))
        return cfg

    return make


MakeAgent = Callable[..., Awaitable[CachingAgent]]


@pytest.fixture
def agent_plugins() -> tuple[object, ...]:
    """The plugins every ``make_agent`` agent of a test folder gets (a folder's conftest
    overrides this: tests/cache_plugins_invalidation registers its plugin)."""
    return ()


@pytest.fixture
async def make_agent(
    clock: FakeClock, agent_plugins: tuple[object, ...]
) -> AsyncIterator[MakeAgent]:
    """``await make_agent(config=None, plugins=(), env=None)``: a started agent on the fake
    clock, with no installed plugin but ``agent_plugins`` and ``plugins`` (so none of the
    caller's REDIS_* / CACHE_* variables leaks in either; compression is off, gzip being a
    plugin's), closed at teardown unless the test closed it."""
    agents: list[CachingAgent] = []

    async def make(
        config: Mapping[str, Any] | None = None,
        plugins: tuple[object, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> CachingAgent:
        cfg = copy.deepcopy(BASE_CONFIG) if config is None else config
        agent = CachingAgent.from_config(
            cfg,
            plugins=(*agent_plugins, *plugins),
            env=NO_PLUGINS_ENV if env is None else env,
            clock=clock,
        )
        await agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.close()


SMALL_LIMITS_TRIGGERS = {
    "user_profile_update": ["user:{user_id}:*"],
    "content_modification": ["content:{content_id}", "tag:content"],
    "mastery_update": ["user:{user_id}:mastery*"],
}


@pytest.fixture
async def small_agent(make_agent: MakeAgent, base_config: Callable[..., dict[str, Any]]) -> Any:
    """An L1-only agent with the invalidation plugin, small limits (keys of 64, batches of
    5, values of 1 KiB), two TTL presets and the seed's three event triggers."""
    import cache_plugins_invalidation.hooks  # not at the top: tests/minimal runs without it

    return await make_agent(
        base_config(
            ttl_presets={"short": 10, "long": 1000},
            invalidation={"event_triggers": SMALL_LIMITS_TRIGGERS},
            limits={
                "max_key_length": 64,
                "max_batch_size": 5,
                "max_warmup_keys": 5,
                "max_value_bytes": 1024,
            },
        ),
        plugins=(cache_plugins_invalidation.hooks,),
    )


@pytest.fixture
def heard() -> Callable[[Any, int], Awaitable[None]]:
    """``await heard(agent, n)``: once ``agent`` has applied ``n`` notices of another
    instance's changes and, with server-assisted coherence, ``n`` of the engine's reports
    (they trail the notices): a read made after it is not overlapped by any of them, so
    what it promotes stays in L1 (a read they overlap is not promoted, by rule)."""

    async def wait(agent: Any, n: int) -> None:
        tier = agent.l2
        tracked = agent.health()["tiers"]["l2"].get("coherence") == "tracking+notices"
        deadline = time.monotonic() + 5
        while tier.notices_received < n or (tracked and tier.invalidations_received < n):
            assert time.monotonic() < deadline, (tier.notices_received, n)
            await asyncio.sleep(0.005)

    return wait
