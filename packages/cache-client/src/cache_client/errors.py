"""The server's JSON errors as exceptions: the core's own type wherever the code is one of
the core's, so ``except InvalidKeyError`` reads the same in-process and over HTTP.

Every error here is a :class:`~cache_core.CacheError`; the client's own types cover what
only HTTP has (a token refused, a server not reached, an answer that is not ours).
"""

from __future__ import annotations

from typing import Any

from cache_core.errors import (
    CacheError,
    CorruptEntryError,
    InvalidKeyError,
    InvalidValueError,
    LoaderError,
    MissingContextError,
    NoLoaderError,
    NotInstalledError,
    NotLoadedError,
    TierUnavailableError,
    UnknownEventError,
    UnknownNameError,
)

__all__ = [
    "AuthenticationError",
    "ConnectionFailedError",
    "ForbiddenError",
    "RequestTimeoutError",
    "ServerError",
    "TransportError",
    "error_from",
    "error_from_answer",
]


class ServerError(CacheError):
    """An error answer whose code has no core type (``invalid_request``, ``not_found`` for
    a route, ``internal_error``, a proxy's page that is not JSON): ``code`` and ``status``
    as the server sent them."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class AuthenticationError(CacheError):
    """401: the token is missing, unknown or not a bearer token."""

    code = "unauthorized"


class ForbiddenError(CacheError):
    """403: the token is valid but may not call this (a namespaced token on /stats)."""

    code = "forbidden"


class TransportError(CacheError):
    """No answer from the server: the request may or may not have been carried out."""

    code = "transport_error"


class ConnectionFailedError(TransportError, ConnectionError):
    """The connection could not be opened, or closed before the answer came."""

    code = "connection_failed"


class RequestTimeoutError(TransportError, TimeoutError):
    """A timeout of :class:`~cache_client.Timeouts` expired before the answer came."""

    code = "timeout"


# Each core type the server can answer with, by its code. The config and plugin errors are
# left out: the server refuses to start with those, and a remote one raised here would read
# as a mistake in the caller's own configuration.
_CORE: dict[str, type[CacheError]] = {
    kind.code: kind
    for kind in (
        InvalidKeyError,
        InvalidValueError,
        UnknownNameError,
        UnknownEventError,
        MissingContextError,
        NotInstalledError,
        TierUnavailableError,
        CorruptEntryError,
        LoaderError,
        NoLoaderError,
        NotLoadedError,
    )
}
_BY_STATUS: dict[int, type[CacheError]] = {401: AuthenticationError, 403: ForbiddenError}


def error_from(code: str, message: str, status: int | None = None) -> CacheError:
    """The exception for one error object, ``status`` None for a per-key error inside a
    200 answer (a batch-get's ``errors``, a warm-up's ``failures``)."""
    kind = _BY_STATUS.get(status) if status is not None else None
    if kind is not None:
        return kind(message)
    # A 404 is a route the server lacks (a wrong base URL, /metrics not enabled), never the
    # "not_found" a loader reports per key, which shares its code.
    if status != 404 and (core := _CORE.get(code)) is not None:
        return core(message)
    return ServerError(code, message, status)


def error_from_answer(status: int, body: Any) -> CacheError:
    """The exception for an error answer (status >= 400), ``body`` its decoded JSON or
    None when it was not JSON."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        if isinstance(code, str) and isinstance(message, str):
            return error_from(code, message, status)
    # Not our error shape: a proxy or load balancer in between answered.
    return error_from("http_error", f"HTTP {status} without an error of the cache", status)
