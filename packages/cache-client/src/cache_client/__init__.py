"""Caching Agent client: the HTTP API with the in-process agent's method names, async
(:class:`AsyncCacheClient`) and blocking (:class:`CacheClient`), errors raised as the
core's exception types."""

from cache_client.aio import DEFAULT_URL, AsyncCacheClient
from cache_client.errors import (
    AuthenticationError,
    ConnectionFailedError,
    ForbiddenError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)
from cache_client.models import Hit
from cache_client.retry import RetryPolicy
from cache_client.settings import Pool, Timeouts
from cache_client.sync import CacheClient

__all__ = [
    "DEFAULT_URL",
    "AsyncCacheClient",
    "AuthenticationError",
    "CacheClient",
    "ConnectionFailedError",
    "ForbiddenError",
    "Hit",
    "Pool",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "Timeouts",
    "TransportError",
]
