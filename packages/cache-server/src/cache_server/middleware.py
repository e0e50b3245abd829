"""What every request goes through: a request id (``X-Request-ID``, taken from the caller
or made here) on every log line of the request and on the response, authentication, errors
as JSON, a SERVER span named by the route (never the raw key) continuing the caller's trace
(``traceparent``) when tracing is on, and the request's duration in
``http.server.request.duration``. A POST route's body is checked and read before its
handler runs (:func:`reading_body`); routes without a body pay nothing for it.

This is not an aiohttp middleware: :func:`add_routes` wraps each route's handler once, when
the app is built, and a last catch-all route answers what no route matches (404, 405). An
application with middlewares pays on every request for aiohttp's own wrapping (a lookup of
the built chain, a coroutine layer of its own) besides each middleware's layer; on an L1
hit that was a tenth of the request.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from aiohttp import HttpVersion11, compression_utils, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer

from cache_server.auth import Authenticator
from cache_server.errors import error_response, response_for
from cache_server.logs import REQUEST_ID
from cache_server.telemetry import OpenTelemetryRecorder

BODY = web.RequestKey("body", bytearray)
"""A POST request's whole body, read (and checked) before its handler runs, which pops it:
parsed, it need not stay while the write goes to L2."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AtOnce = Callable[[web.Request], web.StreamResponse | None]
"""A route's synchronous first try: its answer, or None when the handler must answer."""
ACCESS_LOG = logging.getLogger("cache_server.access")
"""``monitoring.access_log``: one ``http_request`` line per request, at info."""
_MAX_ID = 64
UNMATCHED = "unmatched"
"""The route label of requests no route matches."""
_CATCH_ALL = r"/{unmatched_path:[\s\S]*}"  # any path, newlines included

# Made-up request ids: 64 random bits per process, then a counter. Unique across workers
# and restarts like a uuid4, at a tenth of its cost (no urandom call per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def route_label(path: str) -> str:
    """The route template of ``path`` (``/cache/{key}``): metric labels and span names
    never hold a raw key."""
    return web.DynamicResource(path).canonical if "{" in path else path


_CATCH_ALL_LABEL = route_label(_CATCH_ALL)


def add_routes(
    app: web.Application,
    routes: Iterable[web.AbstractRouteDef],
    authenticator: Authenticator,
    telemetry: OpenTelemetryRecorder | None,
    at_once: Mapping[Handler, AtOnce] | None = None,
    *,
    max_body: int,
    body_timeout: float,
    access_log: bool = False,
) -> None:
    """Add ``routes``, each served through :func:`serving` (with its first try from
    ``at_once``, if any; POST routes through :func:`reading_body` too), then the catch-all
    route. ``access_log``: an ``http_request`` line per request (:data:`ACCESS_LOG`)."""
    access = ACCESS_LOG if access_log else None
    for route in routes:
        assert isinstance(route, web.RouteDef), "only handler routes are served this way"
        plain = route.handler
        assert not isinstance(plain, type), "class-based views are not served this way"
        first = at_once.get(plain) if at_once is not None else None
        kwargs = dict(route.kwargs)
        if route.method == hdrs.METH_POST:
            plain = reading_body(plain, max_body, body_timeout)
            kwargs["expect_handler"] = expecting(authenticator, max_body)
        label = route_label(route.path)
        handler = serving(plain, label, authenticator, telemetry, first, access)
        web.RouteDef(route.method, route.path, handler, kwargs).register(app.router)
    handler = serving(unmatched, UNMATCHED, authenticator, telemetry, access=access)
    web.RouteDef("*", _CATCH_ALL, handler, {}).register(app.router)


async def unmatched(request: web.Request) -> web.StreamResponse:
    """404, or 405 naming the methods of the routes whose path matches (as aiohttp would)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical != _CATCH_ALL_LABEL:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


_JSON = "application/json"
_DECODED = frozenset(
    {"identity", "gzip", "deflate"}
    | ({"br"} if compression_utils.HAS_BROTLI else set())
    | ({"zstd"} if compression_utils.HAS_ZSTD else set())
)
"""Content codings aiohttp undoes (br and zstd when their libraries are installed; it
refuses them itself otherwise); any other would leave coded bytes to be read as JSON."""


def expecting(
    authenticator: Authenticator, max_bytes: int
) -> Callable[[web.Request], Awaitable[web.StreamResponse | None]]:
    """A POST route's answer to ``Expect: 100-continue``: what the head alone refuses
    (no token, not JSON, too large) is answered instead of "100 Continue", so the client
    never sends the body; else "100 Continue", as aiohttp's own handler would."""

    async def expect(request: web.Request) -> web.StreamResponse | None:
        refused = authenticator.admit(request) or _refusal(request, max_bytes)
        if refused is None and request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
            refused = error_response(417, "expectation_failed", "only Expect: 100-continue")
        if refused is not None:
            # The body never comes: whatever the client sends next on this connection
            # would be read as it.
            refused.force_close()
            return refused
        if request.version == HttpVersion11:
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            request.writer.output_size = 0  # the answer proper has not started
        return None

    return expect


def reading_body(handler: Handler, max_bytes: int, timeout: float) -> Handler:
    """``handler`` once its request's body is read in full, and only when that body is JSON
    (else 415: a web page's form or ``text/plain`` post, which a browser sends to any origin
    without asking, never writes), declares no more than ``max_bytes`` (else 413, before
    reading a byte of it) and arrives whole within ``timeout`` seconds (else 408, and the
    connection closes: a client that trickles its body holds no connection for longer).

    The handler finds the body as ``request[BODY]``."""

    @functools.wraps(handler)
    async def read_first(request: web.Request) -> web.StreamResponse:
        refused = _refusal(request, max_bytes)
        if refused is not None:
            return refused
        try:
            if request.content.is_eof():
                # Arrived whole with the head (a small body mostly does): reading it never
                # waits, so no timer to arm and cancel (6 µs a request, twice what parsing
                # a small write's JSON costs).
                body = await _read_body(request, max_bytes)
            else:
                async with asyncio.timeout(timeout):  # the whole body, however it is chunked
                    body = await _read_body(request, max_bytes)
        except TimeoutError:
            return error_response(
                408,
                "request_timeout",
                f"the request body did not arrive within server.body_timeout ({timeout:g} s)",
                close=True,
            )
        except (web.RequestPayloadError, HttpProcessingError) as exc:
            # A bad chunk, a coding the body lacks (the C parser raises the first, the Python
            # one the second). The parser has stopped on this body: ended, it is not read
            # again after the answer (aiohttp's lingering read would raise this again, into
            # its error log).
            request.content.feed_eof()
            reason = str(exc).partition("message:")[2].strip() or "malformed body"
            return error_response(
                400, "invalid_body", f"the request body cannot be read: {reason}", close=True
            )
        except ConnectionResetError:  # the client went away mid-body; nobody reads this
            return error_response(400, "invalid_body", "the body was cut short", close=True)
        if body is None:
            return _too_large(max_bytes, None)
        request[BODY] = body
        del body  # the handler pops it once parsed: no copy of a large value outlives that
        try:
            return await handler(request)
        finally:
            # A keep-alive connection keeps its last request until the next one arrives;
            # not its body too (16 idle connections that had each sent 3 MiB held 45 MiB).
            request.pop(BODY, None)

    return read_first


async def _read_body(request: web.Request, max_bytes: int) -> bytearray | None:
    """The whole body, or None past ``max_bytes``. A bytearray the JSON parser reads as it
    is: ``request.read()`` would copy it into bytes, and keep that on the request."""
    body = bytearray()
    content = request.content
    while chunk := await content.readany():
        body += chunk
        if len(body) > max_bytes:
            return None
    return body


def _too_large(max_bytes: int, length: int | None) -> web.Response:
    """413; ``length`` as declared, None when the body (chunked or decoded) ran past it."""
    size = "longer than that" if length is None else f"{length} bytes"
    return error_response(
        413,
        "request_too_large",
        f"the request body is {size}; the limit is limits.max_request_bytes ({max_bytes})",
        close=True,
    )


def _refusal(request: web.Request, max_bytes: int) -> web.Response | None:
    """What the head alone refuses: not JSON (415), a coding aiohttp cannot undo (415), a
    declared length over ``max_bytes`` (413)."""
    charset = request.charset
    if request.content_type != _JSON or (charset is not None and charset.lower() != "utf-8"):
        given = request.headers.get(hdrs.CONTENT_TYPE, "none")
        return error_response(
            415,
            "unsupported_media_type",
            f"request bodies must be application/json (UTF-8), got Content-Type {given[:100]!r}",
        )
    coding = request.headers.get(hdrs.CONTENT_ENCODING)
    if coding is not None and coding.strip().lower() not in _DECODED:
        return error_response(
            415,
            "unsupported_media_type",
            f"Content-Encoding {coding[:100]!r} is not one of {', '.join(sorted(_DECODED))}",
        )
    length = request.content_length
    if length is not None and length > max_bytes:
        return _too_large(max_bytes, length)
    return None


def serving(
    handler: Handler,
    route: str,
    authenticator: Authenticator,
    telemetry: OpenTelemetryRecorder | None,
    at_once: AtOnce | None = None,
    access: logging.Logger | None = None,
) -> Handler:
    """``handler`` with everything in this module's docstring around it; ``at_once``, when
    given, is tried first and answers without the handler's coroutine when it can;
    ``access``, when given, logs each request's line."""

    @functools.wraps(handler)
    async def serve(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("X-Request-ID")
        if given and len(given) <= _MAX_ID and given.isprintable():
            request_id = given
        else:
            request_id = new_request_id()
        token = REQUEST_ID.set(request_id)
        # Both set when the agent starts, after the app was built.
        tracer = telemetry.tracer if telemetry is not None else None
        record = telemetry.record_request if telemetry is not None else None
        start = time.perf_counter()
        status = 500
        try:
            if tracer is not None:
                response = await _traced(tracer, route, request, handler, authenticator, at_once)
            else:
                # _answer inlined: a coroutine call is a layer the hot path can do without.
                try:
                    answer: web.StreamResponse | None = authenticator.admit(request)
                    if answer is None and at_once is not None:
                        answer = at_once(request)
                    response = answer if answer is not None else await handler(request)
                except Exception as exc:
                    response = response_for(request, exc)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            if record is not None or access is not None:
                seconds = time.perf_counter() - start
                if record is not None:
                    record(seconds, request.method, route, status)
                if access is not None:
                    _log_access(access, request, route, status, seconds)
            REQUEST_ID.reset(token)

    return serve


def _log_access(
    access: logging.Logger, request: web.Request, route: str, status: int, seconds: float
) -> None:
    # Logged before the response is sent (the request id is still current): the duration
    # is the handler's, which is what the service controls; the route is the template, as
    # in metrics, since a raw path can hold a user id.
    access.info(
        "http_request",
        extra={
            "method": request.method,
            "route": route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "remote": request.remote,
        },
    )


async def _answer(
    request: web.Request,
    handler: Handler,
    authenticator: Authenticator,
    at_once: AtOnce | None,
) -> web.StreamResponse:
    try:
        answer: web.StreamResponse | None = authenticator.admit(request)
        if answer is None and at_once is not None:
            answer = at_once(request)
        return answer if answer is not None else await handler(request)
    except Exception as exc:
        return response_for(request, exc)


async def _traced(
    tracer: Tracer,
    route: str,
    request: web.Request,
    handler: Handler,
    authenticator: Authenticator,
    at_once: AtOnce | None,
) -> web.StreamResponse:
    attributes = {"http.request.method": request.method, "http.route": route}
    # The caller's trace continues here (W3C traceparent/tracestate, or whatever
    # OTEL_PROPAGATORS names): without a parent, each request would be a trace of its own.
    parent = propagate.extract(request.headers)
    with tracer.start_as_current_span(
        f"{request.method} {route}", context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        response = await _answer(request, handler, authenticator, at_once)
        span.set_attribute("http.response.status_code", response.status)
        return response
