"""Every error leaves as ``{"error": {"code", "message"}}`` with a fitting status."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from cache_core import (
    CacheError,
    CorruptEntryError,
    InvalidKeyError,
    InvalidValueError,
    LoaderError,
    NotInstalledError,
    TierUnavailableError,
    UnknownNameError,
)

log = logging.getLogger("cache_server")


class RequestError(Exception):
    """Bad input found by the HTTP layer (body, field types)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


STATUS_BY_ERROR: list[tuple[type[CacheError], int]] = [
    (InvalidKeyError, 400),
    (InvalidValueError, 400),
    (UnknownNameError, 400),
    # Like an unknown strategy or event, the request names what this deployment lacks; 400,
    # not 501: a 5xx would be retried and alerted on, and it can never succeed here.
    (NotInstalledError, 400),
    (TierUnavailableError, 503),
    (CorruptEntryError, 502),
    (LoaderError, 502),
]

_HTTP_CODES = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "request_too_large",
    415: "unsupported_media_type",
    500: "internal_error",
}


def error_response(status: int, code: str, message: str, *, close: bool = False) -> web.Response:
    """The JSON error; ``close`` ends the connection after it (a body left half read)."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    response = web.Response(status=status, body=body, content_type="application/json")
    if close:
        response.force_close()
    return response


def http_code(status: int) -> str:
    """The error code of an HTTP status raised or answered by aiohttp itself."""
    return _HTTP_CODES.get(status, "http_error")


def response_for(request: web.Request, exc: Exception) -> web.Response:
    """The JSON error answering ``exc``, raised by a handler; HTTP exceptions below 400
    (redirects) are raised again for aiohttp to send."""
    if isinstance(exc, RequestError):
        return error_response(exc.status, exc.code, str(exc))
    if isinstance(exc, CacheError):
        for kind, status in STATUS_BY_ERROR:
            if isinstance(exc, kind):
                if status >= 500:
                    log.error("cache_error", extra={"code": exc.code, "error": str(exc)})
                return error_response(status, exc.code, str(exc))
        log.error("cache_error", extra={"code": exc.code, "path": request.path}, exc_info=exc)
        return error_response(500, exc.code, str(exc))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        code = http_code(exc.status)
        message = exc.reason if exc.status != 413 else exc.text or exc.reason
        response = error_response(exc.status, code, message or code)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: say what is allowed
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    log.error("cache_error", extra={"code": "internal_error", "path": request.path}, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the server log")
