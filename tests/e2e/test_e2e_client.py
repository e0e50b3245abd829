"""cache-client against the real ``caching-agent serve`` process: every method, async and
blocking (each test runs with both), bearer tokens and namespaces, the core's exception
types, timeouts, the connection pool, and retries of 503 and of connection failures."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cache_client import (
    AsyncCacheClient,
    AuthenticationError,
    CacheClient,
    ConnectionFailedError,
    ForbiddenError,
    Hit,
    Pool,
    RequestTimeoutError,
    RetryPolicy,
    ServerError,
    Timeouts,
)
from cache_core import (
    CorruptEntryError,
    InvalidKeyError,
    InvalidValueError,
    LoaderError,
    MissingContextError,
    TierUnavailableError,
    UnknownEventError,
    UnknownNameError,
)
from cache_core.errors import CacheError, NoLoaderError, NotLoadedError

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-0123456789"
TEAM_A = "team-a-token-0123456789"
TEAM_B = "team-b-token-0123456789"

CONFIG = """\
server:
  tokens:
    - {{token: {admin}}}
    - {{token: {team_a}, namespace: team-a}}
    - {{token: {team_b}, namespace: team-b}}
cache_tiers:
  l1: {{type: memory, max_size_mb: 8, ttl: 300}}
limits:
  max_value_bytes: 4096
invalidation:
  event_triggers:
    user_profile_update: ["user:{{user_id}}:*"]
    badge_change: ["tag:badge:{{badge_id}}"]
ttl_presets:
  short: 1800
loaders:
  http:
    url: "http://127.0.0.1:{origin}/users/{{user_id}}"
    match: ["user:{{user_id}}:profile"]
    timeout: 3
    max_concurrency: 4
"""

FAST = RetryPolicy(attempts=1)
"""No retries: what the server answered first is what a test sees."""


class Origin(http.server.BaseHTTPRequestHandler):
    """What the http loader reads: /users/<id> is a profile; an id ending in -404 has none,
    -500 is an error, -slow takes 2 s."""

    def do_GET(self) -> None:
        user = self.path.rsplit("/", 1)[-1]
        kind = user.rsplit("-", 1)[-1]
        if kind == "slow":
            time.sleep(2)
        status = {"404": 404, "500": 500}.get(kind, 200)
        body = json.dumps({"id": user}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def server(module_spawner: Any, origin: int) -> Any:
    """The module's server: three tokens, an http loader reading :class:`Origin`."""
    config = module_spawner.cwd / "client.yaml"
    config.write_text(
        CONFIG.format(admin=ADMIN, team_a=TEAM_A, team_b=TEAM_B, origin=origin), "utf-8"
    )
    return module_spawner.serve(config)


class Blocking:
    """A :class:`CacheClient`'s methods as coroutines, each call run in a thread: one test
    body drives the blocking client as it drives the async one."""

    def __init__(self, client: CacheClient) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call


Connect = Callable[..., Any]


@pytest.fixture(params=["async", "sync"])
async def connect(request: pytest.FixtureRequest) -> AsyncIterator[Connect]:
    """``connect(url, **options)``: a client of the test's kind, closed at teardown."""
    made: list[AsyncCacheClient | CacheClient] = []

    def make(url: str, **options: Any) -> Any:
        if request.param == "async":
            made.append(AsyncCacheClient(url, **options))
            return made[-1]
        client = CacheClient(url, **options)
        made.append(client)
        return Blocking(client)

    yield make
    for client in made:
        if isinstance(client, AsyncCacheClient):
            await client.close()
        else:
            await asyncio.to_thread(client.close)


@pytest.fixture
def ns() -> str:
    """A key prefix of the test's own on the module's server."""
    return f"c{uuid.uuid4().hex[:8]}:"


def profile_of(ns: str, user: str) -> str:
    """A key the http loader serves (a user id is one key segment: no ':')."""
    return f"user:{ns.rstrip(':')}-{user}:profile"


def retries(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "cache_client_retry"]


async def test_every_method_answers_as_the_agent_does(server, connect, ns):
    cache = connect(server.url, token=ADMIN, retry=FAST)
    profile = profile_of(ns, "1")
    assert await cache.set(f"{ns}a", {"name": "Ada"}, ttl=60, tags=[f"{ns}t"]) == "write_through"
    assert await cache.set(f"{ns}dep", [1], ttl="short", dependencies=[f"{ns}a"]) == (
        "write_through"
    )
    assert await cache.lookup(f"{ns}a") == Hit({"name": "Ada"}, "l1")
    assert await cache.get(f"{ns}a") == {"name": "Ada"}
    assert await cache.lookup(f"{ns}none") is None
    assert await cache.get(f"{ns}none", "fallback") == "fallback"
    assert await cache.get_many([f"{ns}a", f"{ns}none"]) == {
        f"{ns}a": {"name": "Ada"},
        f"{ns}none": None,
    }
    assert await cache.delete(f"{ns}a") is True
    assert await cache.get(f"{ns}dep") is None  # its dependent went with it
    assert await cache.delete(f"{ns}a") is False

    assert await cache.set_many({f"{ns}p:1": 1, f"{ns}p:2": 2}, tags=[f"{ns}batch"]) == 2
    assert await cache.invalidate_by_tags([f"{ns}batch"]) == 2
    assert await cache.get_many([f"{ns}p:1", f"{ns}p:2"]) == {f"{ns}p:1": None, f"{ns}p:2": None}
    assert await cache.invalidate_by_tags([]) == 0

    assert await cache.set_many({f"{ns}q:1": 1, f"{ns}q:2": 2, f"{ns}r": 3}) == 3
    assert await cache.invalidate_pattern(f"{ns}q:*") == 2
    assert await cache.get(f"{ns}r") == 3

    await cache.set(f"user:{ns}7:recs", [1, 2])
    assert await cache.invalidate_by_event("user_profile_update", {"user_id": f"{ns}7"}) == 1
    assert await cache.get(f"user:{ns}7:recs") is None

    await cache.set(f"{ns}x", 1, tags=[f"{ns}tx"])
    await cache.set(f"{ns}y", 2)
    assert await cache.invalidate(pattern=f"{ns}y", tags=[f"{ns}tx"]) == 2

    await cache.set(f"{ns}w", 1)
    report = await cache.warm_up_report([f"{ns}w", f"{ns}cold"])
    assert (report.warmed, report.requested, report.success) == (1, 2, False)
    assert isinstance(report.failures[f"{ns}cold"], NoLoaderError)
    assert await cache.warm_up([profile]) == 1  # computed by the http loader
    assert await cache.lookup(profile) == Hit({"id": f"{ns.rstrip(':')}-1"}, "l1")

    stats = await cache.fetch_stats()
    assert stats["sets"] >= 8 and stats["hits"] >= 1
    assert (await cache.health())["status"] == "ok"


async def test_a_miss_computed_by_the_loader_says_so(server, connect, ns):
    cache = connect(server.url, token=ADMIN, retry=FAST)
    assert await cache.lookup(profile_of(ns, "2")) == Hit({"id": f"{ns.rstrip(':')}-2"}, "loader")


KEYS = [
    "a/b",
    "a%2Fb",  # not the key above: '%' is sent as %25
    "q?x=1&y=2",
    "frag#1",
    "with space",
    "plus+sign",
    "ünï/cødé",
    "emoji 😀",
    ".",
    "..",
    "a/../b",
    "//",
    "/lead",
    "trail/",
    "back\\slash",
    "semi;colon",
    "%",
]


async def test_keys_with_any_character_reach_their_own_entry(server, connect, ns):
    cache = connect(server.url, token=ADMIN, retry=FAST)
    keys = [ns + key for key in KEYS] + KEYS  # also as the whole key: "." and ".." alone
    assert await cache.set_many({key: key for key in keys}) == len(keys)
    for key in keys:  # the path of GET and DELETE: each key finds the value it was set with
        assert await cache.get(key) == key, key
    assert await cache.get_many(keys) == {key: key for key in keys}
    for key in keys:
        assert await cache.delete(key) is True, key
    assert await cache.get_many(keys) == dict.fromkeys(keys)


async def test_error_answers_are_the_cores_exception_types(server, connect, ns):
    cache = connect(server.url, token=ADMIN, retry=FAST)
    cases: list[tuple[type[CacheError], Any]] = [
        (InvalidKeyError, lambda: cache.set(f"{ns}bad\x01key", 1)),  # the server's rule
        (InvalidKeyError, lambda: cache.get(f"{ns}bad\x01key")),  # in the path too
        (InvalidKeyError, lambda: cache.set("k" * 600, 1)),  # past limits.max_key_length
        (InvalidKeyError, lambda: cache.get("")),  # refused before it is sent
        (InvalidKeyError, lambda: cache.invalidate_pattern("")),
        (InvalidValueError, lambda: cache.set(f"{ns}big", "x" * 5000)),  # past max_value_bytes
        (InvalidValueError, lambda: cache.set(f"{ns}k", 1, tags=[""])),
        (InvalidValueError, lambda: cache.set(f"{ns}k", object())),  # not JSON, refused before
        (UnknownNameError, lambda: cache.set(f"{ns}k", 1, strategy="write_sideways")),
        (UnknownNameError, lambda: cache.set(f"{ns}k", 1, ttl="fortnight")),
        (UnknownNameError, lambda: cache.warm_up([f"{ns}k"], compute_strategy="eventually")),
        (UnknownEventError, lambda: cache.invalidate_by_event("no_such_event")),
        (MissingContextError, lambda: cache.invalidate_by_event("badge_change")),
        (LoaderError, lambda: cache.get(profile_of(ns, "500"))),  # the origin answered 500
    ]
    for kind, call in cases:
        with pytest.raises(kind) as raised:
            await call()
        assert type(raised.value) is kind, (kind, raised.value)  # no broader type
        assert raised.value.code == kind.code
    missing, failing = profile_of(ns, "404"), profile_of(ns, "500")
    report = await cache.warm_up_report([missing, failing])
    assert isinstance(report.failures[missing], NotLoadedError)
    assert isinstance(report.failures[failing], LoaderError)

    with pytest.raises(ServerError) as raised:  # what no core type covers: code and status
        await cache.invalidate()
    assert (raised.value.code, raised.value.status) == ("invalid_request", 400)
    wrong_path = connect(server.url + "/not-the-api", token=ADMIN, retry=FAST)
    with pytest.raises(ServerError) as raised:  # a route's 404 is not a loader's not_found
        await wrong_path.get("k")
    assert (raised.value.code, raised.value.status) == ("not_found", 404)


async def test_tokens_and_namespaces(server, connect, ns):
    team_a = connect(server.url, token=TEAM_A, retry=FAST)
    team_b = connect(server.url, token=TEAM_B, retry=FAST)
    admin = connect(server.url, token=ADMIN, retry=FAST)
    key = f"{ns}user:1"
    await team_a.set(key, "a", tags=["t"])
    assert await team_b.get(key) is None  # the same name is another key
    await team_b.set(key, "b", tags=["t"])
    assert (await team_a.get(key), await team_b.get(key)) == ("a", "b")
    assert await team_a.get_many([key]) == {key: "a"}  # named as the client named it
    assert await admin.get(f"team-a/{key}") == "a"  # stored inside the namespace
    assert await team_a.invalidate_pattern(f"{ns}*") == 1  # team A's alone
    assert (await team_a.get(key), await team_b.get(key)) == (None, "b")
    assert await team_b.invalidate_by_tags(["t"]) == 1
    assert await team_b.get(key) is None

    with pytest.raises(ForbiddenError):  # every namespace's counts: the admin's alone
        await team_a.fetch_stats()
    assert "hits" in await admin.fetch_stats()
    for token in (None, "not-a-token-of-this-server"):
        anonymous = connect(server.url, token=token, retry=FAST)
        with pytest.raises(AuthenticationError):
            await anonymous.get(key)
        assert (await anonymous.health())["status"] == "ok"  # open without a token


def established(port: int) -> set[int]:
    """The client ports of the connections established to ``port`` on 127.0.0.1."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if state == "01" and int(local.split(":")[1], 16) == port:
            found.add(int(remote.split(":")[1], 16))
    return found


async def test_concurrent_calls_share_a_bounded_pool_of_connections(server, connect, ns):
    assert server.port is not None
    before = established(server.port)
    cache = connect(server.url, token=ADMIN, retry=FAST, pool=Pool(size=3))
    await cache.set(f"{ns}hot", 1)

    async def burst() -> set[int]:
        # 60 calls at once: 20 threads of the blocking client, 60 tasks of the async one.
        if isinstance(cache, Blocking):
            with ThreadPoolExecutor(20) as threads:
                got = list(threads.map(lambda _: cache.client.get(f"{ns}hot"), range(60)))
        else:
            got = await asyncio.gather(*(cache.get(f"{ns}hot") for _ in range(60)))
        assert got == [1] * 60
        return established(server.port) - before

    first = await burst()
    assert 1 <= len(first) <= 3, first
    assert await burst() == first  # kept alive and reused: no new connection


async def test_a_call_longer_than_its_timeout_raises_and_is_not_retried(
    server, connect, ns, caplog
):
    caplog.set_level(logging.INFO, logger="cache_client")
    slow = connect(server.url, token=ADMIN, timeouts=Timeouts(total=0.5))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        await slow.get(profile_of(ns, "slow"))  # its loader takes 2 s
    assert time.monotonic() - started < 1.5
    assert not retries(caplog)


@pytest.fixture
def silent() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts connections and never answers, and the connections it took."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                taken.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], taken
    finally:
        listener.close()
        for conn in taken:
            conn.close()
        thread.join(5)


async def test_a_server_that_never_answers_times_out(connect, silent):
    port, taken = silent
    cache = connect(f"http://127.0.0.1:{port}", timeouts=Timeouts(total=5, sock_read=0.3))
    started = time.monotonic()
    with pytest.raises(RequestTimeoutError):
        await cache.get("k")
    assert time.monotonic() - started < 1.5  # sock_read, not total
    assert len(taken) == 1  # sent once


async def test_connection_failures_are_retried_within_the_attempts(connect, find_port, caplog):
    caplog.set_level(logging.INFO, logger="cache_client")
    url = f"http://127.0.0.1:{find_port()}"  # nothing listens there
    cache = connect(url, retry=RetryPolicy(attempts=3, backoff=0.01))
    with pytest.raises(ConnectionFailedError) as raised:
        await cache.get("k")
    assert len(retries(caplog)) == 2
    assert any("after 3 attempts" in note for note in raised.value.__notes__)
    caplog.clear()
    stubborn = connect(url, retry=RetryPolicy(attempts=3, retry_connection_errors=False))
    with pytest.raises(ConnectionFailedError):
        await stubborn.get("k")
    assert not retries(caplog)


async def test_a_server_still_starting_is_waited_for(connect, spawner, find_port, workdir, caplog):
    caplog.set_level(logging.INFO, logger="cache_client")
    port = find_port()
    config = workdir / "late.yaml"
    config.write_text("cache_tiers:\n  l1: {max_size_mb: 8}\n", "utf-8")
    patient = RetryPolicy(attempts=100, backoff=0.05, max_backoff=0.2, budget=20)
    cache = connect(f"http://127.0.0.1:{port}", retry=patient)
    spawner.serve(config, port=port, wait=False)  # up in a second or two
    assert await cache.set("k", "v") == "write_through"
    assert await cache.get("k") == "v"
    assert retries(caplog)  # it was not up at the first attempt


def l2_config(engine: Any, prefix: str) -> str:
    return json.dumps(  # (JSON is YAML)
        {
            "redis": {
                "url": engine.url,
                "key_prefix": prefix,
                "socket_timeout": 1,
                "connect_timeout": 0.5,
                "retry_attempts": 1,
            },
            "cache_tiers": {"l1": {"max_size_mb": 8, "ttl": 300}, "l2": {"type": "redis"}},
            "circuit_breaker": {"failure_threshold": 2, "operation_timeout": 0.5},
        }
    )


@pytest.fixture
def l2_server(private_engine: Any, prefix: str, spawner: Any, workdir: Path) -> Any:
    config = workdir / "l2.yaml"
    config.write_text(l2_config(private_engine, prefix), "utf-8")
    return spawner.serve(config)


async def test_an_unreadable_entry_is_a_corrupt_entry_error(
    l2_server, private_engine, prefix, connect
):
    private_engine.client.set(prefix + "planted", b"not one of our frames")
    cache = connect(l2_server.url, retry=FAST)
    with pytest.raises(CorruptEntryError):
        await cache.get("planted")
    await cache.set("fine", 1)
    assert await cache.get_many(["planted", "fine"]) == {"planted": None, "fine": 1}
    failures: dict[str, CacheError] = {}
    assert await cache.get_many(["planted", "fine"], failures) == {"planted": None, "fine": 1}
    assert isinstance(failures["planted"], CorruptEntryError)


async def test_503_is_retried_until_l2_is_back(l2_server, private_engine, connect, caplog):
    caplog.set_level(logging.INFO, logger="cache_client")
    cache = connect(l2_server.url, retry=FAST)
    await cache.set("in-l1", "kept")
    private_engine.kill()
    with pytest.raises(TierUnavailableError):  # not in L1: L2 must answer, and cannot
        await cache.get("elsewhere")
    assert await cache.get("in-l1") == "kept"  # what L1 holds is answered meanwhile
    failures: dict[str, CacheError] = {}
    assert await cache.get_many(["in-l1", "elsewhere"], failures) == {
        "in-l1": "kept",
        "elsewhere": None,
    }
    assert isinstance(failures["elsewhere"], TierUnavailableError)
    with pytest.raises(TierUnavailableError):  # without failures, as the agent's get_many
        await cache.get_many(["in-l1", "elsewhere"])

    bounded = connect(l2_server.url, retry=RetryPolicy(attempts=3, backoff=0.05))
    with pytest.raises(TierUnavailableError) as raised:
        await bounded.set("k", 1)
    assert len(retries(caplog)) == 2
    assert any("after 3 attempts" in note for note in raised.value.__notes__)

    caplog.clear()
    budget = RetryPolicy(attempts=1000, backoff=0.1, max_backoff=0.1, budget=1.0)
    started = time.monotonic()
    with pytest.raises(TierUnavailableError):
        await connect(l2_server.url, retry=budget).get("elsewhere")
    assert time.monotonic() - started < 2.5  # the budget, plus one attempt's answer
    assert 3 <= len(retries(caplog)) <= 20

    caplog.clear()
    patient = RetryPolicy(attempts=100, backoff=0.05, max_backoff=0.25, budget=20)
    restart = threading.Timer(0.5, private_engine.start)
    restart.start()
    try:
        assert await connect(l2_server.url, retry=patient).set("k", 2) == "write_through"
    finally:
        restart.join()
    assert retries(caplog)  # 503s were answered until the engine was back
    assert await cache.get("k") == 2
