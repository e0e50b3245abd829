"""How long a request may take and how many connections a client keeps: each value is ours,
set on aiohttp explicitly, never left to its defaults."""

from __future__ import annotations

import ssl

import aiohttp
from attrs import define, field, validators

_positive = validators.gt(0.0)
_positive_count = validators.gt(0)

# aiohttp rounds timeouts at or above this up to whole seconds (to batch its timers); ours
# are short and meant to the tenth, so none of them is rounded.
_CEIL_THRESHOLD = 3600.0


@define(frozen=True)
class Timeouts:
    """Seconds, per attempt (a retry gets them afresh; :class:`~cache_client.RetryPolicy`
    bounds the whole call)."""

    total: float = field(default=10.0, validator=_positive)
    """The whole attempt: waiting for a pooled connection, sending, reading the answer."""
    connect: float = field(default=2.0, validator=_positive)
    """A connection from the pool, a new one opened included."""
    sock_connect: float = field(default=1.0, validator=_positive)
    """Opening one TCP (and TLS) connection."""
    sock_read: float = field(default=5.0, validator=_positive)
    """Between two reads of the answer: a server that stops sending."""

    def aiohttp(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.total,
            connect=self.connect,
            sock_connect=self.sock_connect,
            sock_read=self.sock_read,
            ceil_threshold=_CEIL_THRESHOLD,
        )


@define(frozen=True)
class Pool:
    """The connections one client keeps to its server."""

    size: int = field(default=10, validator=_positive_count)
    """At most this many connections open at once; more concurrent calls wait for one
    (within ``Timeouts.connect``)."""
    keepalive: float = field(default=15.0, validator=_positive)
    """An idle connection is closed after this; below the server's 75 s, so the client,
    not the server, closes it and a request is never sent on a connection being closed."""
    dns_cache_ttl: int = field(default=10, validator=_positive_count)
    """Seconds a resolved host name is reused (a server moved to another address is found
    within this)."""

    def connector(self, ssl_context: ssl.SSLContext | None) -> aiohttp.TCPConnector:
        return aiohttp.TCPConnector(
            limit=self.size,
            limit_per_host=self.size,
            keepalive_timeout=self.keepalive,
            use_dns_cache=True,
            ttl_dns_cache=self.dns_cache_ttl,
            dns_cache_max_size=16,  # one server's names
            timeout_ceil_threshold=_CEIL_THRESHOLD,
            ssl=True if ssl_context is None else ssl_context,  # True: verified, system CAs
        )
