"""A multiplexed connection for the tier's hot commands: a read's MGET, a write's or
delete's script call.

redis-py gives each command a connection of the pool for its round trip (acquire, send,
wait, read, release, with a timeout and a retry wrapper each): about 40 µs of Python a
command on a unix socket, as much as the engine's whole answer to a GET, and a command
waits for a free connection when the pool is busy. Here commands from any number of tasks
are written onto one connection as they come, and the replies (which the engine sends in
the order it got the commands) are handed to their waiters in that order: a command costs
one write and one future, and concurrent commands share the engine's reads and writes
without waiting for each other (pipelining without a tick). A waiter that gives up (a
timeout, a cancellation) leaves its place in the line: its reply, when it comes, is
dropped, and the others are not thrown off.

Failures look as redis-py's do to the code above (``redis.exceptions``): an error reply is
the exception redis-py would raise for it (NoScriptError, OutOfMemoryError, ...); a lost
connection fails every command waiting on it with ConnectionError and the next command
connects anew; a reply that takes longer than ``socket_timeout`` fails every waiting
command with TimeoutError and drops the connection (one reply late means every reply
behind it is late too). Commands failing so are sent again up to ``retry_attempts`` times
with an exponential backoff, as the tier's redis-py client retries its own.

Used for a single server (a URL, host and port, or the embedded engine); Sentinel and
Cluster keep redis-py, which follows failovers and slots.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from attrs import frozen
from redis._parsers.base import BaseParser
from redis.asyncio.connection import parse_url
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_plugins_redis.packing import pack

_RETRY_BASE = 0.05
_RETRY_CAP = 1.0
_WRITE_BUFFER_HIGH = 1024 * 1024
"""Bytes the transport holds unsent before writers wait for the engine to read them."""


class _Batch:
    """The replies of commands written together, collected for one waiter."""

    __slots__ = ("future", "left", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future = future
        self.left = count
        self.replies: list[Any] = []


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        # Error replies (nested ones too) as the exceptions redis-py makes of them.
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error)
        self._waiting: collections.deque[tuple[asyncio.Future[Any] | _Batch, float]] = (
            collections.deque()
        )
        self._timeout = timeout
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._out: list[bytes] = []
        """Commands of this tick not written yet (see :meth:`send`)."""
        self._out_count = 0
        self.closed = False
        self.lost: asyncio.Future[Exception] = self._loop.create_future()
        """Resolved (with why) when the connection is gone."""
        self.on_push: Callable[[Any], None] | None = None
        """Set on a subscriber's connection: every reply goes there, none to a waiter."""

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=_WRITE_BUFFER_HIGH)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._fail(RedisConnectionError(f"protocol error from the engine: {exc}"))
                return
            if reply is False:
                break
            if self.on_push is not None:
                self.on_push(reply)
                continue
            if not waiting:  # nothing asked for it: the line is lost, start afresh
                self._fail(RedisConnectionError("a reply nobody asked for"))
                return
            waiter = waiting[0][0]
            if isinstance(waiter, _Batch):
                waiter.replies.append(reply)
                waiter.left -= 1
                if waiter.left:
                    continue
                waiting.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(waiter.replies)
                continue
            waiting.popleft()
            if not waiter.done():
                # Every error reply (redis-py makes some ConnectionErrors: LOADING, NOAUTH).
                if isinstance(reply, Exception):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
            if isinstance(reply, AuthenticationError):
                # Credentials the engine no longer takes: a retry must log in anew.
                self._fail(RedisConnectionError(f"the engine refused this connection: {reply}"))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to the engine lost: {exc or 'closed'}"))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- commands --------------------------------------------------------------------------

    def send(self, data: bytes, waiter: asyncio.Future[Any] | _Batch, count: int) -> None:
        """Write ``data`` (``count`` commands) for ``waiter``: at once when nothing else
        waits on the connection (a lone command pays no extra loop iteration), else with the
        other commands of this tick in one write at its end (as the engine's replies come in
        bulk, the commands their waiters send next go out together)."""
        if self.closed or self._transport is None or self._transport.is_closing():
            raise RedisConnectionError("connection to the engine lost")
        waiting = self._waiting
        waiting.append((waiter, time.monotonic()))
        if self._timer is None:
            self._timer = self._loop.call_at(self._loop.time() + self._timeout, self._check)
        if self._out:
            self._out.append(data)
            self._out_count += count
        elif len(waiting) > 1:
            self._out = [data]
            self._out_count = count
            self._loop.call_soon(self._flush)
        else:
            self.write([data], count)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self._transport is not None:
            self.write(out, self._out_count)

    def write(self, chunks: list[bytes], commands: int) -> None:
        """One write of ``commands`` commands to the engine: one round trip."""
        assert self._transport is not None
        self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    @property
    def paused(self) -> bool:
        """Whether the engine reads slower than commands come: writers wait (:meth:`writable`)."""
        return not self._writable.is_set()

    async def writable(self) -> None:
        await self._writable.wait()

    @property
    def idle(self) -> bool:
        return not self._waiting

    def _check(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        late = time.monotonic() - self._waiting[0][1]
        if late >= self._timeout:
            self._fail(RedisTimeoutError(f"no reply from the engine in {self._timeout} s"))
            return
        self._timer = self._loop.call_at(self._loop.time() + self._timeout - late, self._check)

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(exc)
        self._out = []
        self._writable.set()  # writers waiting for room find the connection closed
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, collections.deque()
        for waiter, _ in waiting:
            future = waiter.future if isinstance(waiter, _Batch) else waiter
            if not future.done():
                future.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._fail(RedisConnectionError("connection closed"))


@frozen
class Endpoint:
    """Where the engine is and how to open a connection to it: a unix socket (``path``) or
    ``host`` and ``port`` (TLS with ``tls``), the credentials, the database, the name the
    connection gets (``CLIENT SETNAME``), and how long connecting may take."""

    host: str
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None
    client_name: str
    connect_timeout: float
    tls: ssl.SSLContext | None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None,
        password: str | None,
        client_name: str,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Endpoint:
        """The endpoint of a ``redis://``, ``rediss://`` or ``unix://`` URL (credentials in
        the URL win over those given)."""
        options = parse_url(url)
        return cls(
            host=str(options.get("host", "localhost")),
            port=int(options.get("port", 6379)),
            path=options.get("path"),
            db=int(options.get("db", 0)),
            username=options.get("username") or username,
            password=options.get("password") or password,
            client_name=client_name,
            connect_timeout=connect_timeout,
            tls=ssl_context,
        )


async def open_connection(endpoint: Endpoint, socket_timeout: float) -> _Connection:
    """A connection to ``endpoint``, authenticated, on its database and named; replies
    later than ``socket_timeout`` fail it."""
    loop = asyncio.get_running_loop()

    def made() -> _Connection:
        return _Connection(socket_timeout)

    conn: _Connection | None = None
    try:
        async with asyncio.timeout(endpoint.connect_timeout):
            if endpoint.path is not None:
                _, conn = await loop.create_unix_connection(made, endpoint.path)
            else:
                _, conn = await loop.create_connection(
                    made, endpoint.host, endpoint.port, ssl=endpoint.tls
                )
            hello: list[list[Any]] = []
            if endpoint.password is not None:
                auth = [endpoint.username] if endpoint.username else []
                hello.append(["AUTH", *auth, endpoint.password])
            if endpoint.db:
                hello.append(["SELECT", endpoint.db])
            hello.append(["CLIENT", "SETNAME", endpoint.client_name])
            batch = _Batch(loop.create_future(), len(hello))
            conn.send(b"".join(pack(command) for command in hello), batch, len(hello))
            replies = await batch.future
    except BaseException as exc:
        if conn is not None:  # (cancelled too: no half-open connection is left behind)
            conn.close()
        if isinstance(exc, TimeoutError):
            raise RedisTimeoutError(
                f"cannot connect to the engine in {endpoint.connect_timeout} s"
            ) from None
        if isinstance(exc, OSError):
            raise RedisConnectionError(f"cannot connect to the engine: {exc}") from exc
        raise
    for reply in replies:
        if isinstance(reply, Exception):  # a wrong password is an AuthenticationError
            conn.close()
            raise reply
    return conn


class Wire:
    """One multiplexed connection to the engine at ``endpoint`` (see the module's
    docstring)."""

    def __init__(self, endpoint: Endpoint, *, socket_timeout: float, retry_attempts: int) -> None:
        self.endpoint = endpoint
        self._socket_timeout = socket_timeout
        self._attempts = retry_attempts
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    async def call(self, *args: Any) -> Any:
        """One command's reply (an error reply raised as redis-py raises it)."""
        return await self._round_trip(pack(args), 1)

    async def calls(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies of ``commands``, written together; an error reply is its exception,
        in its place (as a redis-py pipeline's ``execute(raise_on_error=False)``)."""
        if not commands:
            return []  # (a batch waiting for no reply would take the next command's)
        if len(commands) == 1:
            try:
                return [await self.call(*commands[0])]
            except ResponseError as exc:
                return [exc]
        data = b"".join(pack(command) for command in commands)
        replies: list[Any] = await self._round_trip(data, len(commands))
        return replies

    async def _round_trip(self, data: bytes, count: int) -> Any:
        """The reply of the one command ``data`` holds (``count`` 1), or the list of the
        replies of its ``count`` commands; sent again after a connection error or timeout,
        up to the retry attempts."""
        for attempt in range(self._attempts + 1):
            conn = self._conn
            try:
                if conn is None or conn.closed:
                    conn = await self._connection()
                if conn.paused:
                    await conn.writable()
                future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                conn.send(data, future if count == 1 else _Batch(future, count), count)
                return await future
            except (RedisConnectionError, RedisTimeoutError):
                if attempt == self._attempts or self._closed:
                    raise
                await asyncio.sleep(min(_RETRY_CAP, _RETRY_BASE * 2**attempt))
        raise AssertionError("unreachable")

    async def connect(self) -> None:
        """Connect now (else the first command does), so a tier that starts can reach the
        engine this way too."""
        if self._conn is None or self._conn.closed:
            await self._connection()

    def reset_idle(self) -> None:
        """Drop the connection if nothing waits on it (it most likely died with the engine
        or the network); the next command connects anew."""
        if self._conn is not None and self._conn.idle:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _connection(self) -> _Connection:
        if self._closed:
            raise RedisConnectionError("the tier is closed")
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn  # made by a connect another caller started
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        connecting = self._connecting
        try:
            # Shielded: a caller giving up does not stop the connect the others wait for.
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if connecting.cancelled() and task is not None and not task.cancelling():
                raise RedisConnectionError("the tier is closed") from None  # by close()
            raise

    async def _connect(self) -> _Connection:
        conn = await open_connection(self.endpoint, self._socket_timeout)
        if self._closed:
            conn.close()
            raise RedisConnectionError("the tier is closed")
        # Set here, not by the callers as they resume: one that comes in between must find
        # it, not open a second connection.
        self._conn = conn
        return conn


def ssl_context(
    ca_certs: str | None, certfile: str | None, keyfile: str | None, check_hostname: bool
) -> ssl.SSLContext:
    """A client TLS context verifying the server as redis-py's ``rediss://`` does."""
    context = ssl.create_default_context(cafile=ca_certs)
    context.check_hostname = check_hostname
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


__all__ = ["Endpoint", "Wire", "open_connection", "ssl_context"]
