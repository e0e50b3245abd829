"""Registers the Redis-backed invalidation index with the Caching Agent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cache_core import hookimpl
from cache_plugins_invalidation.redis_index import RedisIndex


@hookimpl
def cache_register_invalidators() -> Sequence[type[Any]]:
    return [RedisIndex]
