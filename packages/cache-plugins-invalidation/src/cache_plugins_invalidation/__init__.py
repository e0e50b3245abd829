"""Invalidation indexes for the Caching Agent kept in Redis: tags, dependencies, events."""

from cache_plugins_invalidation.redis_index import RedisIndex

__all__ = ["RedisIndex"]
