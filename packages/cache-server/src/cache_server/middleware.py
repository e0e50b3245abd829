"""Per-request observability: a request id (``X-Request-ID``, taken from the caller or
made here) on every log line of the request and on the response, a trace span named by the
route (never the raw key), and the request's duration in ``http.server.request.duration``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from cache_server.keys import TELEMETRY
from cache_server.logs import REQUEST_ID

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_MAX_ID = 64


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    canonical = resource.canonical if resource is not None else None
    return canonical or "unmatched"


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get("X-Request-ID", "")
    request_id = given if 0 < len(given) <= _MAX_ID and given.isprintable() else uuid.uuid4().hex
    token = REQUEST_ID.set(request_id)
    telemetry = request.app[TELEMETRY]
    start = time.perf_counter()
    status = 500
    route = _route(request)
    try:
        if telemetry is not None and telemetry.tracer is not None:
            attributes = {"http.request.method": request.method, "http.route": route}
            with telemetry.tracer.start_as_current_span(
                f"{request.method} {route}", attributes=attributes
            ) as span:
                response = await handler(request)
                span.set_attribute("http.response.status_code", response.status)
        else:
            response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        if telemetry is not None:
            telemetry.http_duration.record(
                time.perf_counter() - start, (request.method, route, status)
            )
        REQUEST_ID.reset(token)
