"""The tier's multiplexed connection (cache_plugins_redis.wire): many tasks' commands on one
connection, each reply to its own waiter, failures as redis-py's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_plugins_redis.wire import Endpoint, Wire


def make_wire(
    url: str,
    socket_timeout: float = 2.0,
    retry_attempts: int = 0,
    username: str | None = None,
    password: str | None = None,
) -> Wire:
    endpoint = Endpoint.from_url(
        url, username=username, password=password, client_name="wire-test", connect_timeout=2.0
    )
    return Wire(endpoint, socket_timeout=socket_timeout, retry_attempts=retry_attempts)


@pytest.fixture
async def wire(engine: Any) -> AsyncIterator[Wire]:
    made = make_wire(engine.url)
    await made.connect()
    yield made
    await made.close()


async def test_concurrent_commands_each_get_their_own_reply(wire: Wire, prefix: str) -> None:
    async def one(i: int) -> tuple[Any, Any]:
        await wire.call("SET", f"{prefix}{i}", i)
        return await wire.call("GET", f"{prefix}{i}"), await wire.call("INCR", f"{prefix}n")

    replies = await asyncio.gather(*(one(i) for i in range(300)))
    assert [value for value, _ in replies] == [str(i).encode() for i in range(300)]
    assert sorted(count for _, count in replies) == list(range(1, 301))


async def test_an_error_reply_is_its_own_commands_alone(wire: Wire, prefix: str) -> None:
    await wire.call("SET", prefix + "text", "not a number")
    outcomes = await asyncio.gather(
        wire.call("INCR", prefix + "text"),
        wire.call("SET", prefix + "ok", 1),
        wire.call("EVALSHA", "0" * 40, 0),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], ResponseError) and "not an integer" in str(outcomes[0])
    assert outcomes[1] == b"OK"
    assert isinstance(outcomes[2], NoScriptError)  # as redis-py raises it
    batch = await wire.calls([["INCR", prefix + "text"], ["GET", prefix + "ok"]])
    assert isinstance(batch[0], ResponseError) and batch[1] == b"1"


async def test_a_waiter_that_gives_up_leaves_the_line_in_order(wire: Wire, prefix: str) -> None:
    await wire.call("SET", prefix + "a", "A")
    await wire.call("SET", prefix + "b", "B")
    quitter = asyncio.create_task(wire.call("GET", prefix + "a"))
    await asyncio.sleep(0)  # written
    quitter.cancel()
    # Its reply comes all the same and is dropped: the next waiter gets its own.
    assert await wire.call("GET", prefix + "b") == b"B"
    assert quitter.cancelled()


async def test_a_cut_connection_fails_its_waiters_and_the_next_command_reconnects(
    proxy: Any, prefix: str
) -> None:
    wire = make_wire(f"redis://127.0.0.1:{proxy.port}/0")
    try:
        assert await wire.call("SET", prefix + "k", 1) == b"OK"
        proxy.mode = "blackhole"
        waiting = asyncio.create_task(wire.call("GET", prefix + "k"))
        await asyncio.sleep(0.05)
        proxy.cut()
        with pytest.raises(RedisConnectionError):
            await waiting
        proxy.mode = "pass"
        assert await wire.call("GET", prefix + "k") == b"1"
    finally:
        await wire.close()


async def test_a_late_reply_times_out_every_waiter_and_drops_the_connection(
    proxy: Any, prefix: str
) -> None:
    wire = make_wire(f"redis://127.0.0.1:{proxy.port}/0", socket_timeout=0.2)
    try:
        await wire.connect()
        proxy.mode = "blackhole"
        late = [asyncio.create_task(wire.call("GET", f"{prefix}{i}")) for i in range(3)]
        done, _ = await asyncio.wait(late, timeout=2)
        assert len(done) == 3
        assert all(isinstance(task.exception(), RedisTimeoutError) for task in late)
        proxy.mode = "pass"
        proxy.cut()  # the held bytes must not reach the next connection either
        proxy.mode = "pass"
        assert await wire.call("SET", prefix + "k", 2) == b"OK"
        assert await wire.call("GET", prefix + "k") == b"2"
    finally:
        await wire.close()


async def test_retries_carry_a_command_over_a_dropped_connection(proxy: Any, prefix: str) -> None:
    wire = make_wire(f"redis://127.0.0.1:{proxy.port}/0", retry_attempts=3)
    try:
        assert await wire.call("SET", prefix + "k", 1) == b"OK"
        proxy.cut()
        proxy.mode = "pass"
        assert await wire.call("GET", prefix + "k") == b"1"
    finally:
        await wire.close()


async def test_the_database_of_the_url_is_selected(engine: Any, prefix: str) -> None:
    wire = make_wire(f"redis://127.0.0.1:{engine.port}/3")
    try:
        await wire.call("SET", prefix + "db", "three")
    finally:
        await wire.close()
    assert engine.client.get(prefix + "db") is None
    import redis

    other = redis.Redis(port=engine.port, db=3)
    try:
        assert other.get(prefix + "db") == b"three"
    finally:
        other.close()


async def test_a_closed_wire_refuses_commands(engine: Any) -> None:
    wire = make_wire(engine.url)
    await wire.close()
    with pytest.raises(RedisConnectionError):
        await wire.call("PING")


@pytest.fixture
def acl_user(engine: Any, prefix: str) -> Iterator[tuple[str, str]]:
    name, password = f"wire{prefix[1:-1]}", "s3cret-passw0rd"
    engine.client.execute_command(
        "ACL", "SETUSER", name, "on", f">{password}", f"~{prefix}*", "+@all"
    )
    yield name, password
    engine.client.execute_command("ACL", "DELUSER", name)


async def test_a_refused_login_fails_the_connect(
    engine: Any, acl_user: tuple[str, str], prefix: str
) -> None:
    """Found in review: an AUTH refused at the handshake (an AuthenticationError, which
    redis-py makes a ConnectionError, not a ResponseError) passed as a login."""
    name, password = acl_user
    wrong = make_wire(engine.url, username=name, password="not-it")
    with pytest.raises(AuthenticationError):
        await wrong.connect()
    await wrong.close()
    right = make_wire(engine.url, username=name, password=password)
    try:
        assert await right.call("SET", prefix + "k", 1) == b"OK"
    finally:
        await right.close()


async def test_a_login_withdrawn_is_an_error_and_the_retry_logs_in_anew(
    engine: Any, acl_user: tuple[str, str], prefix: str
) -> None:
    """An error reply that redis-py makes a ConnectionError (NOAUTH, LOADING) is raised to
    its command, never handed back as its value; a refused login drops the connection."""
    name, password = acl_user
    wire = make_wire(engine.url, username=name, password=password, retry_attempts=1)
    try:
        await wire.connect()
        engine.client.execute_command("ACL", "SETUSER", name, "resetpass", ">other-passw0rd")
        engine.client.execute_command("CLIENT", "KILL", "USER", name)
        with pytest.raises(RedisConnectionError):
            await wire.call("GET", prefix + "k")
    finally:
        await wire.close()


async def test_callers_arriving_during_a_connect_share_one_connection(
    engine: Any, prefix: str
) -> None:
    """Found in review: a caller that came between the connect's end and its waiters'
    resumption opened a second connection, which nothing closed."""
    wire = make_wire(engine.url)
    try:
        calls = []
        for i in range(50):  # one new caller a loop iteration, as steady traffic brings
            calls.append(asyncio.create_task(wire.call("SET", f"{prefix}{i}", i)))
            await asyncio.sleep(0)
        await asyncio.gather(*calls)
        clients = engine.client.execute_command("CLIENT", "LIST").decode()
        assert clients.count("name=wire-test ") == 1
    finally:
        await wire.close()


async def test_close_during_a_connect_is_a_tier_error_not_a_cancellation(proxy: Any) -> None:
    wire = make_wire(f"redis://127.0.0.1:{proxy.port}/0")
    proxy.mode = "blackhole"  # the handshake never answers
    waiting = asyncio.create_task(wire.call("PING"))
    await asyncio.sleep(0.05)
    await wire.close()
    with pytest.raises(RedisConnectionError):
        await waiting


async def test_an_empty_batch_sends_nothing(wire: Wire, prefix: str) -> None:
    assert await wire.calls([]) == []
    assert await wire.call("SET", prefix + "k", 1) == b"OK"  # the line is in order
