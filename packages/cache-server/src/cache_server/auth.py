"""Bearer-token authentication and per-token namespaces.

With ``server.auth_token`` (or ``CACHE_API_TOKEN``) or ``server.tokens`` set, every route but
/health and /openapi.json needs ``Authorization: Bearer <token>`` (the scheme in any case, as
RFC 9110 has it); tokens are compared in constant time, all of them every time. A token with
a ``namespace`` confines its client: every key, tag, dependency, pattern and event target it
names is taken inside ``<namespace>/``, so two clients can neither read nor invalidate each
other's keys, patterns included. /stats and /metrics count every namespace's traffic, so
they answer admin tokens (those without a namespace) alone: 403 to a namespaced one.
"""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from cache_core.errors import ConfigError
from cache_server.errors import error_response
from cache_server.settings import ServerSettings

NAMESPACE = web.RequestKey("namespace", str)
"""The request's key prefix: ``"<namespace>/"``, or ``""`` for an unconfined client."""

OPEN_PATHS = frozenset({"/health", "/openapi.json"})
ADMIN_PATHS = frozenset({"/stats", "/metrics"})
"""What a namespaced token may not see: every tenant's counts."""
_SCHEME = "bearer "
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Authenticator:
    def __init__(self, settings: ServerSettings) -> None:
        self._tokens: list[tuple[bytes, str]] = []
        if settings.auth_token is not None:
            self._tokens.append((settings.auth_token.encode(), ""))
        for index, client in enumerate(settings.tokens):
            prefix = ""
            if client.namespace is not None:
                if not _NAMESPACE.fullmatch(client.namespace):
                    raise ConfigError(
                        f"server.tokens[{index}].namespace: letters, digits, '_', '.', '-' "
                        f"(1-64), got {client.namespace!r}"
                    )
                prefix = client.namespace + "/"
            self._tokens.append((client.token.encode(), prefix))

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def namespace_of(self, header: str | None) -> str | None:
        """The key prefix of the presented token, or None when it is missing or unknown."""
        if not header or header[: len(_SCHEME)].lower() != _SCHEME:
            return None
        # aiohttp decodes header bytes that are not UTF-8 to lone surrogates; they go back
        # to the bytes sent, which then match no token (every token is text).
        presented = header[len(_SCHEME) :].strip().encode("utf-8", "surrogateescape")
        found = None
        for token, prefix in self._tokens:  # every token, every time: no early exit to time
            if hmac.compare_digest(presented, token):
                found = prefix
        return found

    def admit(self, request: web.Request) -> web.Response | None:
        """Set the request's namespace and return None, or return the 401 answer."""
        if not self._tokens:
            request[NAMESPACE] = ""
            return None
        if request.path in OPEN_PATHS:
            return None
        prefix = self.namespace_of(request.headers.get("Authorization"))
        if prefix is None:
            response = error_response(
                401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is needed"
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="caching-agent"'
            return response
        if prefix and request.path in ADMIN_PATHS:
            return error_response(
                403, "forbidden", f"{request.path} shows every namespace: it needs an admin token"
            )
        request[NAMESPACE] = prefix
        return None
