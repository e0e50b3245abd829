"""How the ``caching-agent`` command serves an app: as ``web.run_app`` would, except that
errors aiohttp answers itself (a request it cannot parse: a bad chunk size, Content-Length
with Transfer-Encoding, a header line too long, an invalid method) leave in the API's JSON
error shape instead of ``text/plain``.

Those errors never reach the app: the connection's protocol object
(:class:`aiohttp.web.RequestHandler`) answers them through its ``handle_error`` method. The
one supported way to change that answer is a subclass of it made by a :class:`web.Server`
subclass, served by a :class:`web.ServerRunner`, which ``web.run_app`` cannot be told to use;
so :func:`serve_app` runs the app's own :class:`web.AppRunner` for its lifetime (startup, cleanup,
the request handler and request factory it builds) and listens with that server instead.
Only public aiohttp names are used; :class:`JsonErrorHandler` calls the inherited
``handle_error`` first, so aiohttp's logging and connection handling stay its own.

The in-process test server (``aiohttp.test_utils``) keeps aiohttp's plain answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from cache_server.collector import freeze_startup_heap
from cache_server.errors import error_response, http_code

KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection stays open (web.run_app's default)."""
LINGERING_TIME = 5.0
"""Seconds the server goes on reading (and dropping) a body it answered without reading
(401, 413, 415, 408) before it closes, so that the client reads the answer rather than a
reset; a slow-body client is let go this long after its 408."""
_MAX_MESSAGE = 200
log = logging.getLogger("cache_server.server")


class JsonErrorHandler(web.RequestHandler):
    """A connection whose own error answers are JSON, with aiohttp's status codes."""

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            # Logs as aiohttp does, and raises when part of a response went out already.
            plain = super().handle_error(request, status, exc, message)
            status = plain.status
        else:
            # The client's own malformed request, which anyone can send at will: one
            # line, not aiohttp's error-level traceback each time.
            log.info("malformed_request", extra={"status": status, "error": _why(status, exc)})
            if request.writer.output_size > 0:
                raise ConnectionError("a response went out already; the connection is broken")
        return error_response(status, http_code(status), _why(status, exc), close=True)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if resp.status >= 400 and resp.content_type == "text/plain" and not resp.prepared:
            # aiohttp's own answer to what no route can even try (``OPTIONS *``, a CONNECT
            # target): in the JSON error shape like every other.
            plain = resp
            resp = error_response(plain.status, http_code(plain.status), plain.reason)
            if hdrs.ALLOW in plain.headers:
                resp.headers[hdrs.ALLOW] = plain.headers[hdrs.ALLOW]
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            # Sent: the connection keeps this response until its next request arrives (an
            # idle keep-alive connection, for up to 75 s), but not a multi-MiB body with it.
            if isinstance(resp, web.Response):
                resp.body = None


def _why(status: int, exc: BaseException | None) -> str:
    if isinstance(exc, HttpProcessingError) and exc.message and status < 500:
        # The first line of the parser's message, without its echo of the bytes sent.
        first = exc.message.split("\n", 1)[0].split(": b'", 1)[0].rstrip(" :.")
        return f"malformed HTTP request: {first[:_MAX_MESSAGE]}"
    if status == 504:
        return "the request took too long"
    if status >= 500:
        return "internal error; see the server log"
    return "malformed HTTP request"


class JsonErrorServer(web.Server):
    """A :class:`web.Server` whose connections are :class:`JsonErrorHandler`\\ s."""

    def __init__(
        self,
        handler: Any,
        *,
        request_factory: Any,
        handler_cancellation: bool = False,
        **handler_args: Any,
    ) -> None:
        super().__init__(
            handler,
            request_factory=request_factory,
            handler_cancellation=handler_cancellation,
            **handler_args,
        )
        self._handler_args = handler_args

    def __call__(self) -> web.RequestHandler:
        return JsonErrorHandler(self, loop=asyncio.get_running_loop(), **self._handler_args)


def json_error_server(app_runner: web.AppRunner, **handler_args: Any) -> JsonErrorServer:
    """A server for the app ``app_runner`` has set up: its request handler and factory."""
    plain = app_runner.server
    assert plain is not None, "set the runner up first"
    return JsonErrorServer(
        plain.request_handler,
        request_factory=plain.request_factory,
        handler_cancellation=plain.handler_cancellation,
        **handler_args,
    )


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    ready: Callable[[], None],
    reuse_port: bool,
    shutdown_timeout: float,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGINT or SIGTERM; ``ready`` is called once it
    listens (the startup heap frozen just before: see :mod:`cache_server.collector`). Then,
    as web.run_app: stop listening, give in-flight requests ``shutdown_timeout`` seconds,
    and clean the app up (the agent closes, flushing)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:  # before the app starts: a signal while it starts stops it
        with contextlib.suppress(NotImplementedError):  # no such handlers on Windows
            loop.add_signal_handler(signum, stop.set)
    try:
        app_runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await app_runner.setup()  # the app's startup: CacheError when the agent cannot start
        try:
            server = json_error_server(
                app_runner,
                access_log=None,
                keepalive_timeout=KEEPALIVE_TIMEOUT,
                lingering_time=LINGERING_TIME,
            )
            runner = web.ServerRunner(server, shutdown_timeout=shutdown_timeout)
            await runner.setup()
            try:
                if not stop.is_set():
                    # Started, and no request in flight yet: what exists now stays.
                    freeze_startup_heap()
                    await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
                    ready()
                    await stop.wait()
            finally:
                await runner.cleanup()
        finally:
            await app_runner.cleanup()
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
